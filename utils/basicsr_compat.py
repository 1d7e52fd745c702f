"""Make ``basicsr`` 1.4.2 importable with current torchvision.

basicsr 1.4.2 (``basicsr/data/degradations.py``) does
``from torchvision.transforms.functional_tensor import rgb_to_grayscale``; torchvision removed the
private module ``functional_tensor`` in 0.17. We register a tiny alias module that exposes the same
function from its public home, ``torchvision.transforms.functional``, before basicsr is imported.
Import this module (``import utils.basicsr_compat``) before any ``import basicsr``; importing it is
idempotent and does nothing when the real module exists.
"""
import importlib.util
import sys
import types

_LEGACY = "torchvision.transforms.functional_tensor"


def install() -> None:
    """Register the alias module if torchvision no longer ships it."""
    if _LEGACY in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        if importlib.util.find_spec(_LEGACY) is not None:
            return
    except ModuleNotFoundError:
        pass
    from torchvision.transforms import functional

    alias = types.ModuleType(_LEGACY)
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    alias.__doc__ = "Compatibility alias created by utils.basicsr_compat for basicsr 1.4.2."
    sys.modules[_LEGACY] = alias


install()
