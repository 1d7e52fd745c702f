"""Samples of a diffusion prior from pure noise, as an image grid: what the prior alone has learned.

    python scripts/sample_prior.py [--config CONFIG] [--num 16] [--seed 0] [--ckpt PATH LABEL ...] [--out PNG]
        [--detect [--real LIST]] [--show N] [--eta ETA]

``--detect`` prints how often offline face detectors find a face in each checkpoint's samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.datasets import load_face, read_file_list  # noqa: E402
from faces.presence import DETECTOR_NAMES, FacePresence  # noqa: E402
from inference.strip import make_strip, stack_rows, title_band  # noqa: E402
from sampler import load_sample_config  # noqa: E402
from utils.config import instantiate  # noqa: E402
from utils.image_io import write_image  # noqa: E402
from utils.model_factory import build_model  # noqa: E402

DEFAULT_CONFIG = "configs/sample/dynfacerestore_demo.yaml"
DEFAULT_REAL = "../shared/data/faces_hq/celeba128_val.txt"
PER_ROW = 8


@torch.no_grad()
def sample_prior(cfg, ckpt: str, noise: torch.Tensor, seed: int, eta: Optional[float] = None) -> torch.Tensor:
    """Samples in [0, 1] (N, 3, H, W) of the prior ``cfg.model`` with weights ``ckpt`` from ``noise``:
    ancestral sampling, or DDIM with ``eta`` when given."""
    node = cfg.model.copy()
    node.ckpt_path = ckpt
    model = build_model(node, hint="a prior UNet state dict")
    diffusion = instantiate(cfg.diffusion)
    torch.manual_seed(seed)  # the per-step noise of the ancestral sampler (and of DDIM with eta > 0)
    if eta is None:
        x0 = diffusion.p_sample_loop(model, tuple(noise.shape), noise=noise.clone(), clip_denoised=True)
    else:
        x0 = diffusion.ddim_sample_loop(model, tuple(noise.shape), noise=noise.clone(), clip_denoised=True, eta=eta)
    return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)


def sample_grid(samples: torch.Tensor, label: str) -> np.ndarray:
    """Title band ``label`` over rows of :data:`PER_ROW` labelled tiles (uint8 RGB)."""
    images = samples.permute(0, 2, 3, 1).cpu().numpy()
    rows = [
        make_strip([(f"#{i + 1}", images[i]) for i in range(start, min(start + PER_ROW, len(images)))])
        for start in range(0, len(images), PER_ROW)
    ]
    body = stack_rows(rows, gap=4)
    return stack_rows([title_band(label, body.shape[1], height=32), body], gap=0)


def presence_table(rows: Sequence[Tuple[str, torch.Tensor]]) -> str:
    """Markdown table of face presence rates (``faces.presence``), one row per (label, images in [0, 1])."""
    presence = FacePresence()
    lines = [f"| images | n | {' | '.join(DETECTOR_NAMES)} | all three |", "|---|---:|" + "---:|" * 4]
    for label, images in rows:
        rates = presence.rates(list(images.permute(0, 2, 3, 1).cpu().numpy()))
        cells = " | ".join(f"{rates[k]:.2f}" for k in (*DETECTOR_NAMES, "all"))
        lines.append(f"| {label} | {len(images)} | {cells} |")
    return "\n".join(lines)


def real_faces(source: str, num: int, size: int) -> torch.Tensor:
    """The first ``num`` faces of a list file or folder, (N, 3, size, size) in [0, 1]."""
    paths = read_file_list(source)[:num]
    return torch.from_numpy(np.stack([load_face(p, size) for p in paths])).permute(0, 3, 1, 2)


def parse_ckpts(pairs: Sequence[str]) -> List[Tuple[str, str]]:
    if len(pairs) % 2:
        raise SystemExit("--ckpt takes PATH LABEL pairs")
    return [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument(
        "--ckpt",
        nargs="+",
        default=None,
        metavar="PATH LABEL",
        help="prior weights and a row label, repeatable (default: the config's weights)",
    )
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--respacing", default=None, help="e.g. ddim250, 1000 (default: the config's)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "prior_samples_demo64.png")
    parser.add_argument("--detect", action="store_true", help="print face presence rates (faces.presence)")
    parser.add_argument("--real", default=DEFAULT_REAL, help="real faces of the --detect reference row")
    parser.add_argument("--show", type=int, default=None, help="samples per checkpoint in the grid (default: all)")
    parser.add_argument("--eta", type=float, default=None, help="DDIM with this eta instead of ancestral sampling")
    args = parser.parse_args(argv)
    if args.detect and not Path(args.real).exists():
        parser.error(f"--real: file list or image folder not found: {args.real}")
    overrides = [] if args.respacing is None else [f"diffusion.params.timestep_respacing={args.respacing}"]
    cfg = load_sample_config(ROOT / args.config if not Path(args.config).is_file() else args.config, overrides)
    ckpts = parse_ckpts(args.ckpt) if args.ckpt else [(cfg.model.ckpt_path, str(cfg.model.ckpt_path))]
    size = int(cfg.resolution)
    noise = torch.randn(args.num, 3, size, size, generator=torch.Generator().manual_seed(args.seed))
    samples = [(label, sample_prior(cfg, path, noise, args.seed, args.eta)) for path, label in ckpts]
    out = write_image(args.out, stack_rows([sample_grid(x[: args.show], label) for label, x in samples], gap=12))
    print(
        f"prior samples ({args.num} per checkpoint, seed {args.seed}, "
        f"{cfg.diffusion.params.timestep_respacing} steps, "
        f"{'ancestral' if args.eta is None else f'DDIM eta {args.eta:g}'}) written to {out}"
    )
    if args.detect:
        references = [
            (f"real faces ({Path(args.real).name}, {size} px)", real_faces(args.real, args.num, size)),
            ("the noise x_T", ((noise + 1.0) / 2.0).clamp(0.0, 1.0)),
        ]
        print(presence_table(references + samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
