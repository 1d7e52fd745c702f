"""A complete tiny DynFaceRestore/DifFace setup for tests: real architectures, random weights, 32 px.

``make_tiny_setup(out_dir, faces)`` writes checkpoints of a tiny prior, RM0 restorer, SDE, TM, RM
(and DGSA when ``with_dgsa``), a DSST table built from real faces, and a sampling config that points
at them, and returns the config path. The SDE's output layer is re-initialised randomly so that
different faces get different sigma_hat, hence different start steps (mixed batches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from models.dsst_build import build_table, load_faces
from utils.config import instantiate

RESOLUTION = 32

DIFFUSION = {
    "target": "models.script_util.create_gaussian_diffusion",
    "params": {
        "steps": 1000,
        "learn_sigma": True,
        "noise_schedule": "linear",
        "rescale_learned_sigmas": True,
        "timestep_respacing": "ddim25",
    },
}
UNET = {
    "target": "models.unet.UNetModel",
    "params": {
        "image_size": RESOLUTION,
        "in_channels": 3,
        "model_channels": 32,
        "out_channels": 6,
        "num_res_blocks": 1,
        "attention_resolutions": [4],
        "channel_mult": [1, 2],
        "num_head_channels": 16,
        "use_scale_shift_norm": True,
    },
}
SWINIR_SMALL = {
    "img_size": 16,
    "patch_size": 1,
    "embed_dim": 8,
    "depths": [1],
    "num_heads": [2],
    "window_size": 4,
    "mlp_ratio": 2,
    "sf": 2,
    "img_range": 1.0,
    "upsampler": "nearest+conv",
    "resi_connection": "1conv",
    "unshuffle": True,
    "unshuffle_scale": 2,
}
RESTORER = {"target": "models.swinir.SwinIR", "params": dict(SWINIR_SMALL, in_chans=3)}
SDE = {"target": "DiffBIR.sde.SigmaEstimator", "params": {"channels": [8, 16], "log_sigma_init": 0.0}}
TM = {"target": "DiffBIR.transform.TransformModel", "params": {"swinir": SWINIR_SMALL}}
RM = {"target": "DiffBIR.transform.RefinementModel", "params": {"swinir": SWINIR_SMALL}}
DGSA = {
    "target": "models.dgsa.DGSA",
    "params": {"model_channels": 32, "channel_mult": [1, 2], "s_max": 1.0, "b_ref": 0.05},
}


def _save(node: dict, path: Path, seed: int, tweak=None) -> dict:
    torch.manual_seed(seed)
    model = instantiate(node)
    if tweak is not None:
        tweak(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return dict(node, ckpt_path=str(path))


def _random_dgsa_head(model) -> None:
    """Random output weights: the zero-initialised head would give the same map everywhere."""
    with torch.no_grad():
        model.out[-1].weight.normal_(0.0, 0.05)


def _spread_sde(faces: torch.Tensor):
    """Random output weights so sigma_hat differs between faces (the zero init makes it constant),
    calibrated on ``faces`` to log sigma_hat ~ N(0.3, 0.6^2): sigma around 1.3 px at 32 px."""

    def tweak(model) -> None:
        with torch.no_grad():
            last = model.head[-1]
            last.weight.normal_(0.0, 1.0)
            log_sigma = model(faces, log=True)
            gain = 0.6 / log_sigma.std().clamp(min=1e-6)
            last.weight.mul_(gain)
            last.bias.add_(0.3 - (log_sigma * gain).mean() + last.bias * (gain - 1))

    return tweak


def make_tiny_setup(out_dir: Path, faces: Sequence[Path], with_dgsa: bool = False, **sampler) -> Path:
    """Write the tiny setup under ``out_dir``; ``sampler`` entries override the config's sampler section."""
    out_dir = Path(out_dir)
    table = build_table(
        list(faces),
        np.linspace(0.0, 4.0, 33),
        resolution=RESOLUTION,
        noise_schedule="linear",
        num_steps=1000,
        tau=0.05,
        batch_size=16,
    )
    table_path = table.save(out_dir / "dsst.json")
    cfg = {
        "resolution": RESOLUTION,
        "diffusion": DIFFUSION,
        "model": _save(UNET, out_dir / "unet.pth", 0),
        "restorer": _save(RESTORER, out_dir / "restorer.pth", 1),
        "dblm": {
            "num_levels": 3,
            "rho": 0.75,
            "sigma_min_512": 0.5,
            "sde": _save(SDE, out_dir / "sde.pth", 2, _spread_sde(load_faces(list(faces), RESOLUTION))),
            "tm": _save(TM, out_dir / "tm.pth", 3),
            "rm": _save(RM, out_dir / "rm.pth", 4),
        },
        "dsst": {"table_path": str(table_path)},
        "sampler": {
            "method": "dynfacerestore",
            "start": "dsst",
            "fixed_start_index": 10,
            "eta": "auto",
            "guidance": {
                "mode": "dgsa" if with_dgsa else "global",
                "lam": 0.05,
                "global_scale": 1.0,
                "combine": "sharpest",
            },
        },
    }
    if with_dgsa:
        cfg["dgsa"] = _save(DGSA, out_dir / "dgsa.pth", 5, _random_dgsa_head)
    cfg["sampler"].update(sampler)
    path = out_dir / "tiny_sample.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
