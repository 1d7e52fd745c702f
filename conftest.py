"""Repository root on sys.path for tests; shared test fixtures live in tests/conftest.py."""

import utils  # noqa: F401  (makes basicsr importable before any test module imports it)
