"""Command line of ``inference_difface.py`` (docs/method.md section 11). The paper's command works as written::

    torchrun --nproc_per_node=8 inference_difface.py -i [folder/image] -i_hq [folder/image] --bs [N] \
        -o [result folder] --task restoration --eta 0.5 --aligned --use_fp16
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from faces.detection import DEFAULT_MIN_FACE_SIZE, DETECTORS, OFFLINE_DEFAULT, RETINAFACE_WEIGHTS_HINT
from faces.paste import PASTE_MODES
from inference.steps import preset_overrides, presets, steps_overrides
from models.solvers import SOLVERS
from sample_config import METHODS
from sampler import PRECISIONS
from utils.image_file import ALPHA_MODES
from utils.model_factory import resolve_path

DEFAULT_CONFIG = "configs/sample/dynfacerestore_ffhq512.yaml"
TASKS = ("restoration",)


def offered_configs() -> List[str]:
    """The sampling configs shipped in configs/sample/, as paths relative to the repository root."""
    root = Path(__file__).resolve().parents[1]
    return sorted(p.relative_to(root).as_posix() for p in (root / "configs" / "sample").glob("*.yaml"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inference_difface.py",
        description="Blind face restoration with DynFaceRestore or DifFace over image "
        "folders (torchrun: one share of the files per process).",
    )
    p.add_argument("-i", "--input", required=True, help="LQ image or folder")
    p.add_argument(
        "-i_hq",
        "--input_hq",
        default=None,
        help="HQ reference image or folder, matched by file stem; enables PSNR/SSIM/LPIPS",
    )
    p.add_argument("-o", "--output", required=True, help="result folder")
    p.add_argument("--bs", type=int, default=4, help="images per batch and process (default 4)")
    p.add_argument("--task", default="restoration", help="only 'restoration' is implemented")
    p.add_argument(
        "--eta",
        default=None,
        help="DDIM eta: a number in [0, 1] or 'auto' (sigma_512/10 per image); default: the config's",
    )
    p.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are aligned faces (one larger than the model comes back at its own size, merged "
        "by the paste rule); otherwise faces are detected, aligned and pasted back",
    )
    p.add_argument(
        "--use_fp16",
        action="store_true",
        help="fp16 prior on CUDA (warned and ignored on CPU); the same as --precision fp16",
    )
    p.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default=None,
        help="dtype of the prior's UNet trunk: fp32 (default), fp16 or bf16 (CUDA only)",
    )
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"sampling config (default {DEFAULT_CONFIG}); shipped: {', '.join(offered_configs())}",
    )
    p.add_argument("--method", choices=METHODS, default=None, help="overrides sampler.method of the config")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="respace the 1000-step schedule as ddimN (DifFace keeps its start t = 400); default: the "
        "config's. --steps 250 --solver ddim is the paper's setting (docs/steps.md)",
    )
    p.add_argument(
        "--solver",
        choices=SOLVERS,
        default=None,
        help="ddim, or dpmpp_2m (second-order multistep on the guided x0); default: the config's",
    )
    p.add_argument(
        "--preset",
        choices=sorted(presets()),
        default=None,
        help="named steps, solver and guidance from configs/presets/steps.yaml (paper: 250 steps of "
        "DDIM, guided once per step); --steps / --solver given as well win",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed; each image uses hash(seed, name)")
    p.add_argument("--recursive", action="store_true", help="also take images in sub-folders of -i")
    p.add_argument(
        "--save_intermediates",
        action="store_true",
        help="per image: intermediates/<name>.png strip (LQ | levels | guidance map | result) + JSON",
    )
    p.add_argument(
        "--skip_existing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip images whose output and record exist (default on)",
    )
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default="auto",
        help="face detector for unaligned images: auto (RetinaFace when --detection_weights exists, "
        f"else the offline {OFFLINE_DEFAULT}), retinaface, mtcnn_dlib, mtcnn, dlib "
        "(docs/face_detection.md)",
    )
    p.add_argument(
        "--detection_weights",
        default=RETINAFACE_WEIGHTS_HINT,
        help="RetinaFace-ResNet50 weights (a download; the offline detectors need none)",
    )
    p.add_argument(
        "--min_face_size",
        type=int,
        default=DEFAULT_MIN_FACE_SIZE,
        help=f"ignore detected faces whose box is shorter than this (px, default {DEFAULT_MIN_FACE_SIZE})",
    )
    p.add_argument("--upscale", type=float, default=1.0, help="background upscale factor for unaligned images")
    p.add_argument(
        "--paste",
        choices=PASTE_MODES,
        default=None,
        help="paste-back of unaligned images: resolution_aware (keeps the input's detail above the "
        "model's band, weighted by the estimated degradation) or classic (the restored face "
        "replaces the region); default: the config's paste.mode",
    )
    p.add_argument(
        "--lpips_weights",
        default=None,
        help="folder with the offline LPIPS arrays (else $DYNFACE_LPIPS_WEIGHTS; without either, "
        "LPIPS is not computed)",
    )
    p.add_argument("--lpips_net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default alex)")
    p.add_argument(
        "--alpha",
        choices=ALPHA_MODES,
        default="keep",
        help="images with transparency: keep (the models see the transparent area on the mean colour, "
        "the output keeps the alpha; default) or drop (opaque RGB, the stored colour as it is)",
    )
    p.add_argument("--min_side", type=int, default=16, help="skip images with a shorter side below this (px)")
    p.add_argument(
        "--max_side", type=int, default=4096, help="downscale images whose longer side exceeds this (px), with a note"
    )
    p.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides (OmegaConf dot-list), e.g. sampler.guidance.mode=none",
    )
    return p


class UsageError(ValueError):
    """A command line that cannot run; the message is printed as one line (exit status 2)."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.task not in TASKS:
        raise UsageError(f"--task {args.task!r} is not supported: this implementation performs {', '.join(TASKS)} only")
    if args.bs < 1:
        raise UsageError(f"--bs must be at least 1, got {args.bs}")
    if args.min_face_size < 1:
        raise UsageError(f"--min_face_size must be at least 1, got {args.min_face_size}")
    if args.upscale <= 0:
        raise UsageError(f"--upscale must be positive, got {args.upscale}")
    if not 1 <= args.min_side <= args.max_side:
        raise UsageError(f"need 1 <= --min_side <= --max_side, got {args.min_side} and {args.max_side}")
    if args.use_fp16 and args.precision not in (None, "fp16"):
        raise UsageError(f"--use_fp16 contradicts --precision {args.precision}")
    args.precision = args.precision or ("fp16" if args.use_fp16 else "fp32")
    bad = [o for o in args.opts if "=" not in o]
    if bad:
        raise UsageError(f"--opts entries must be key=value, got {bad}")
    return args


def config_overrides(args: argparse.Namespace) -> List[str]:
    """Dot-list overrides for the sampling config: --opts, then --method and --paste, then --steps and
    --solver (or those of --preset), which win."""
    base = (
        list(args.opts)
        + ([f"sampler.method={args.method}"] if args.method else [])
        + ([f"paste.mode={args.paste}"] if args.paste else [])
    )
    config = resolve_path(args.config)
    if args.preset:
        base = preset_overrides(config, base, args.preset)
    return steps_overrides(config, base, args.steps, args.solver)
