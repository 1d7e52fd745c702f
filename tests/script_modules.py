"""scripts/<name>.py imported as a module for tests (scripts/ is not a package; a script may import its
siblings, as sample_exact_levels imports eval_dblm_levels)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as the module ``name`` (imported once, with scripts/ on sys.path meanwhile)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)
