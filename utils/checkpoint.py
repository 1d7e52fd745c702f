"""The one place where model weights are read from and written to disk.

``load_checkpoint`` unwraps the first present of ``WRAPPER_KEYS`` (EMA first) until a state dict remains,
strips ``module.`` / ``_orig_mod.`` prefixes, ignores the model's non-persistent buffers, and refuses any
other mismatch with a message naming the file, keys and shapes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import torch
from torch import nn

from utils.image_io import write_bytes_atomic

WRAPPER_KEYS = ("params_ema", "ema", "state_dict", "model", "params")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
SHOWN_KEYS = 5  # how many offending keys an error message lists

Source = Union[str, os.PathLike, Mapping]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model; the message says why."""


def unreadable(path: Path, err: Exception) -> CheckpointError:
    """ "<path>: cannot read checkpoint (<error type>: <its first sentence>)": one line, whatever torch says."""
    lines = str(err).strip().splitlines()
    reason = lines[0].split(". ")[0] if lines else ""
    return CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {reason})")


def _load_file(path: Path, map_location, hint: Optional[str]) -> Mapping:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" + (f"; {hint}" if hint else ""))
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported with the file name
        raise unreadable(path, err) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def extract_state_dict(
    obj: Mapping, key: Optional[str] = None, name: str = "<dict>", model_keys: Optional[Iterable[str]] = None
) -> Dict[str, torch.Tensor]:
    """The state dict inside ``obj`` (precedence in the module docstring), prefixes stripped (``strip_prefixes``)."""
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{name}: no entry {key!r}; top-level keys: {_preview(list(obj))}")
        obj = obj[key]
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            raise CheckpointError(
                f"{name}: no state dict found (not all values are tensors and none of "
                f"{list(WRAPPER_KEYS)} is present); keys: {_preview(list(obj))}"
            )
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a dict of tensors, found {type(obj).__name__}")
    return strip_prefixes(dict(obj), model_keys)


def strip_prefixes(
    state: Dict[str, torch.Tensor], model_keys: Optional[Iterable[str]] = None
) -> Dict[str, torch.Tensor]:
    """Remove ``module.`` / ``_orig_mod.`` prefixes carried by every key, one level at a time.

    With ``model_keys``, stripping stops as soon as some key matches the model (so a model whose own
    submodule is called ``module`` keeps its name)."""
    wanted = set(model_keys) if model_keys is not None else set()
    while state and not wanted & set(state):
        prefix = next((p for p in STRIPPED_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _preview(keys: List[str]) -> str:
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def non_persistent_buffers(model: nn.Module) -> set:
    """Full names of the buffers that ``model.state_dict()`` leaves out (rebuilt by the model)."""
    return {
        f"{mod_name}.{b}" if mod_name else b
        for mod_name, mod in model.named_modules()
        for b in mod._non_persistent_buffers_set
    }


def read_state_dict(
    path: Union[str, os.PathLike], *, key: Optional[str] = None, hint: Optional[str] = None
) -> Dict[str, torch.Tensor]:
    """The state dict stored in the file ``path`` (CPU tensors), with the errors of :func:`load_checkpoint`."""
    path = Path(path)
    return extract_state_dict(_load_file(path, "cpu", hint), key, str(path))


def load_checkpoint(
    model: nn.Module,
    source: Source,
    *,
    strict: bool = True,
    key: Optional[str] = None,
    map_location="cpu",
    hint: Optional[str] = None,
) -> nn.Module:
    """Load ``source`` (a file path or a loaded dict) into ``model`` and return ``model``.

    Raises :class:`CheckpointError` naming the file, keys and shapes when the file is missing or unreadable, holds
    no state dict, or does not fit (shapes always; missing or unexpected keys when ``strict``)."""
    if isinstance(source, Mapping):
        name, obj = "<in-memory checkpoint>", source
    else:
        path = Path(source)
        name, obj = str(path), _load_file(path, map_location, hint)
    expected = model.state_dict()
    rebuilt = non_persistent_buffers(model)
    state = extract_state_dict(obj, key, name, model_keys=list(expected) + sorted(rebuilt))
    state = {k: v for k, v in state.items() if k not in rebuilt}
    mismatched = [
        f"{k}: model {tuple(expected[k].shape)} vs file {tuple(v.shape)}"
        for k, v in state.items()
        if k in expected and expected[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_preview(mismatched)}")
    if strict and missing:
        problems.append(f"{len(missing)} missing key(s): {_preview(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
    if problems:
        raise CheckpointError(f"{name} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=strict)
    return model


def save_checkpoint(path: Union[str, os.PathLike], state: dict) -> Path:
    """``torch.save(state)`` atomically (temp file + rename); ``state`` holds only tensors, numbers, strings and
    containers of them, so ``torch.load(weights_only=True)`` reads it back."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes_atomic(path, buffer.getvalue())
