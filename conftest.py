"""Repository root on sys.path for tests; shared test fixtures live in tests/conftest.py."""
