"""Make ``basicsr`` 1.4.2 importable with current torchvision: registers
``torchvision.transforms.functional_tensor.rgb_to_grayscale`` (removed in torchvision 0.17) as an alias of the
public function. Import before ``basicsr``; idempotent, and a no-op when the real module exists.
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
