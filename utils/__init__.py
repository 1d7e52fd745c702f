"""Shared utilities. Importing the package first makes basicsr 1.4.2 importable (:mod:`utils.basicsr_compat`),
so no module's import order has to protect it."""

from utils import basicsr_compat  # noqa: F401
