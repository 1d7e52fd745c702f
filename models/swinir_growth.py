"""Function-preserving depth growth of a trained SwinIR (Net2Net "deeper", Chen et al. 2016).

    python -m models.swinir_growth --config configs/training/swinir_demo64.yaml \
        --init weights/demo/restorer_demo64.pth --out experiments/demo64/restorer_grown.pth \
        "model.params.depths=[6,6,6,6]" "model.params.num_heads=[6,6,6,6]"

Trained tensors keep their names; each added group computes z + Conv_k(SwinBlocks_k(z)) with Conv_k = 0, so
the grown network equals the trained one (checked in float64 before writing).
"""

from __future__ import annotations

import argparse
from typing import Dict, List

import torch
from torch import nn

from models.swinir import SwinIR
from utils.checkpoint import CheckpointError, read_state_dict, save_checkpoint
from utils.config import ConfigError, instantiate, load_config

IDENTITY_ATOL = 1e-10  # float64: grown and trained network agree to rounding


def added_groups(model: SwinIR, state: Dict[str, torch.Tensor]) -> List[int]:
    """Indices of the residual groups of ``model`` that ``state`` has no weights for."""
    return [k for k in range(len(model.layers)) if not any(n.startswith(f"layers.{k}.") for n in state)]


def grow_depth(model: SwinIR, state: Dict[str, torch.Tensor]) -> List[int]:
    """Load the smaller network's ``state`` into ``model`` and make its added groups the identity.

    Raises :class:`CheckpointError` when a tensor of ``state`` has no place in ``model`` (another name or
    shape: only whole groups may be added, at the end), when ``model`` adds no group, or when ``state`` lacks
    a tensor outside the added groups. Returns the indices of the added groups."""
    expected = model.state_dict()
    new = added_groups(model, state)
    misfit = [k for k, v in state.items() if k not in expected or expected[k].shape != v.shape]
    if misfit:
        raise CheckpointError(
            f"the trained state does not fit the grown SwinIR: {len(misfit)} tensor(s) differ "
            f"in name or shape, e.g. {misfit[:3]}"
        )
    if not new or new != list(range(len(model.layers) - len(new), len(model.layers))):
        raise CheckpointError(
            f"growth adds whole residual groups after the trained ones; the model has "
            f"{len(model.layers)} groups and the state lacks {new or 'none'}"
        )
    kept = [k for k in expected if not any(k.startswith(f"layers.{g}.") for g in new)]
    missing = [k for k in kept if k not in state]
    if missing:
        raise CheckpointError(
            f"the trained state lacks {len(missing)} tensor(s) outside the added groups, e.g. {missing[:3]}"
        )
    model.load_state_dict(state, strict=False)
    for k in new:
        closing = [m for m in model.layers[k].conv.modules() if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(closing.weight)
        nn.init.zeros_(closing.bias)
    return new


def max_difference(grown: SwinIR, small: SwinIR, in_chans: int, resolution: int) -> float:
    """Largest |grown(x) - small(x)| in float64 on two random images (both networks are left in float64)."""
    x = torch.rand(2, in_chans, resolution, resolution, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((grown.double().eval()(x) - small.double().eval()(x)).abs().max())


def grow_file(config: str, init: str, out: str, overrides: List[str]) -> str:
    """Grow the weights file ``init`` to the SwinIR of ``config`` (+ ``overrides``), check, write ``out``."""
    cfg = load_config(config, overrides=overrides)
    state = read_state_dict(init)
    grown = instantiate(cfg.model)
    new = grow_depth(grown, state)
    params = cfg.model.params
    small = SwinIR(**dict(params, depths=list(params.depths)[: new[0]], num_heads=list(params.num_heads)[: new[0]]))
    small.load_state_dict(state)
    error = max_difference(grown, small, params.in_chans, cfg.data.train.resolution)
    if error > IDENTITY_ATOL:
        raise CheckpointError(f"grown network differs from the trained one by {error:.3g} (float64): not written")
    save_checkpoint(out, grown.float().state_dict())
    return f"{out}: groups {new} added to {init} (max |difference| {error:.1e} in float64)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training config of the grown network (model section)")
    parser.add_argument("--init", required=True, help="trained weights of the smaller network")
    parser.add_argument("--out", required=True, help="where the grown state dict goes")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.params.depths=[6,6,6,6]")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    try:
        print(grow_file(args.config, args.init, args.out, args.overrides))
    except (CheckpointError, ConfigError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
