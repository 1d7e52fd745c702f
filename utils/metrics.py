"""Image-quality metrics of the face-restoration literature: PSNR, SSIM, LPIPS, NIQE (docs/method.md section 11).

Inputs are float32 HxWx3 RGB in [0, 1], quantised to uint8 as saved; PSNR, SSIM (RGB) and NIQE are
basicsr 1.4.2's, LPIPS v0.1 with AlexNet or VGG16. Identity and landmark metrics come from
``faces.identity``, ``utils.arcface`` and ``utils.landmarks``. :data:`METRIC_CONVENTIONS` is written into
every CSV header.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

with warnings.catch_warnings():  # basicsr 1.4.2 imports scipy.ndimage.filters (deprecated alias)
    warnings.simplefilter("ignore", DeprecationWarning)
    from basicsr.metrics.niqe import calculate_niqe
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim

from faces.identity import IDENTITY_CONVENTIONS, FaceIdentity
from utils.arcface import ARCFACE_CONVENTIONS
from utils.image_io import img2tensor
from utils.landmarks import LANDMARK_CONVENTIONS

CROP_BORDER = 0
NIQE_BLOCK = 96  # basicsr's (and the official MATLAB code's) NIQE block size
NIQE_MIN_BLOCKS = 2
LPIPS_WEIGHTS_ENV = "DYNFACE_LPIPS_WEIGHTS"
LPIPS_NETS = {"alex": "alexnet_features.npz", "vgg": "vgg16_features.npz"}

METRIC_CONVENTIONS: Dict[str, str] = {
    "psnr": f"psnr_rgb[basicsr,uint8,crop{CROP_BORDER}]",
    "ssim": f"ssim_rgb[basicsr,uint8,crop{CROP_BORDER}]",
    "lpips_alex": "lpips_alex[v0.1,[-1,1]]",
    "lpips_vgg": "lpips_vgg[v0.1,[-1,1]]",
    "niqe": f"niqe_y[basicsr,uint8,crop{CROP_BORDER},block{NIQE_BLOCK}]",
    **IDENTITY_CONVENTIONS,
    **ARCFACE_CONVENTIONS,
    **LANDMARK_CONVENTIONS,
    "fid": "fid[pt_inception_2015-12-05,2048,vs_hq_folder]",
    "fid_stats": "fid[pt_inception_2015-12-05,2048,vs_stats_file]",
    "kid": "kid[pt_inception_2015-12-05,2048,poly3,unbiased,subsets]",
}


def to_uint8_range(img: np.ndarray) -> np.ndarray:
    """float [0, 1] HxWx3 -> float64 array of the uint8 values it is saved as (round(clip(x) * 255))."""
    return np.round(np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0) * 255.0)


def _check_pair(img: np.ndarray, ref: np.ndarray) -> None:
    for name, arr in (("image", img), ("reference", ref)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{name} must be an HxWx3 RGB array in [0, 1], got {getattr(arr, 'shape', type(arr))}")
    if img.shape != ref.shape:
        raise ValueError(f"image and reference sizes differ: {img.shape} vs {ref.shape}")


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB, convention ``METRIC_CONVENTIONS['psnr']``; ``inf`` for identical uint8 images."""
    _check_pair(img, ref)
    return float(
        calculate_psnr(
            to_uint8_range(img), to_uint8_range(ref), crop_border=CROP_BORDER, input_order="HWC", test_y_channel=False
        )
    )


def ssim(img: np.ndarray, ref: np.ndarray) -> float:
    """SSIM, convention ``METRIC_CONVENTIONS['ssim']`` (1 for identical images)."""
    _check_pair(img, ref)
    return float(
        calculate_ssim(
            to_uint8_range(img), to_uint8_range(ref), crop_border=CROP_BORDER, input_order="HWC", test_y_channel=False
        )
    )


def niqe_unavailable_reason(height: int, width: int) -> Optional[str]:
    """Why NIQE cannot be computed at this size (fewer than two whole 96x96 blocks), or ``None``."""
    blocks = (height // NIQE_BLOCK) * (width // NIQE_BLOCK)
    if blocks < NIQE_MIN_BLOCKS:
        return (
            f"NIQE needs at least {NIQE_MIN_BLOCKS} whole {NIQE_BLOCK}x{NIQE_BLOCK} blocks, "
            f"a {height}x{width} image has {blocks}"
        )
    return None


def niqe(img: np.ndarray) -> float:
    """NIQE (lower is better), convention ``METRIC_CONVENTIONS['niqe']``; NaN with a warning if too small."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"NIQE input must be an HxWx3 RGB array in [0, 1], got {getattr(img, 'shape', type(img))}")
    reason = niqe_unavailable_reason(*img.shape[:2])
    if reason is not None:
        warnings.warn(reason + "; NIQE reported as NaN", stacklevel=2)
        return math.nan
    bgr = to_uint8_range(img)[:, :, ::-1]  # basicsr's Y conversion expects BGR
    return float(calculate_niqe(bgr, crop_border=CROP_BORDER, input_order="HWC", convert_to="y"))


def load_lpips_backbone(model: torch.nn.Module, npz_path: Union[str, os.PathLike]) -> None:
    """Copy offline backbone + head arrays (their format: weights/README.md) into an ``lpips.LPIPS``.

    ``features.N.*`` go to ``net.slice<K>.N.*``, heads keep their names; a missing, extra or misshapen array
    raises ``ValueError`` naming the file and the keys."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise FileNotFoundError(
            f"LPIPS weights not found: {npz_path}. Point --lpips_weights or ${LPIPS_WEIGHTS_ENV} at a folder "
            f"holding {sorted(LPIPS_NETS.values())} (see weights/README.md)"
        )
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    current = model.state_dict()
    targets = {}
    for key in current:
        if key.startswith("net.slice"):
            _, _, index, kind = key.split(".")
            targets[key] = f"features.{index}.{kind}"
        elif key.startswith("lin") and not key.startswith("lins."):
            targets[key] = key
    missing = sorted(src for src in targets.values() if src not in arrays)
    unused = sorted(set(arrays) - set(targets.values()))
    if missing or unused:
        raise ValueError(
            f"{npz_path} does not match lpips net '{model.pnet_type}': missing {missing}, unexpected {unused}"
        )
    state = {}
    for dst, src in targets.items():
        expected = tuple(current[dst].shape)
        if arrays[src].shape != expected:
            raise ValueError(f"{npz_path}: '{src}' has shape {arrays[src].shape}, lpips expects {expected}")
        state[dst] = torch.from_numpy(np.ascontiguousarray(arrays[src], dtype=np.float32))
    model.load_state_dict(state, strict=False)  # lins.* share storage with lin*; scaling_layer is constant


class LPIPSMetric:
    """LPIPS v0.1 distance (Zhang et al., CVPR 2018), ``name`` = ``lpips_alex`` or ``lpips_vgg``.

    The backbone comes from ``weights_dir`` (or ``$DYNFACE_LPIPS_WEIGHTS``), else torchvision downloads it.
    Two HxWx3 [0, 1] arrays -> float; two NCHW [-1, 1] tensors -> list of N floats."""

    def __init__(
        self,
        net: str = "alex",
        weights_dir: Optional[Union[str, os.PathLike]] = None,
        device: Union[str, torch.device] = "cpu",
    ):
        import lpips

        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_NETS)}, got '{net}'")
        self.net, self.name = net, f"lpips_{net}"
        self.device = torch.device(device)
        weights_dir = weights_dir if weights_dir is not None else os.environ.get(LPIPS_WEIGHTS_ENV)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=`` flag
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=weights_dir is not None, verbose=False)
        if weights_dir is not None:
            load_lpips_backbone(model, Path(weights_dir) / LPIPS_NETS[net])
        self.model = model.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, a: Union[np.ndarray, torch.Tensor], b: Union[np.ndarray, torch.Tensor]):
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            _check_pair(a, b)
            return self(img2tensor(a), img2tensor(b))[0]
        if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.ndim != 4 or a.shape != b.shape:
            raise ValueError(
                "LPIPS takes two HxWx3 arrays or two equally shaped NCHW tensors, got "
                f"{getattr(a, 'shape', type(a))} and {getattr(b, 'shape', type(b))}"
            )
        dist = self.model(a.to(self.device, torch.float32), b.to(self.device, torch.float32))
        return [float(v) for v in dist.flatten().cpu()]


def compute_metrics(
    img: np.ndarray,
    ref: Optional[np.ndarray] = None,
    lpips_metric: Optional[LPIPSMetric] = None,
    with_niqe: bool = False,
    identity: Optional[FaceIdentity] = None,
    face_metrics: Sequence = (),
) -> Dict[str, float]:
    """Metrics of one restored image, keyed by the names of :data:`METRIC_CONVENTIONS`.

    Full-reference metrics (psnr, ssim, lpips, identity, ``face_metrics``) need ``ref``; ``with_niqe`` adds NIQE."""
    out: Dict[str, float] = {}
    if ref is not None:
        out["psnr"] = psnr(img, ref)
        out["ssim"] = ssim(img, ref)
        if lpips_metric is not None:
            out[lpips_metric.name] = lpips_metric(img, ref)
        for metric in ([identity] if identity is not None else []) + list(face_metrics):
            _check_pair(img, ref)
            out.update(metric.metrics(img, ref))
    if with_niqe:
        out["niqe"] = niqe(img)
    return out


def csv_header(names: List[str]) -> List[str]:
    """Column titles for metric ``names``: the convention strings of :data:`METRIC_CONVENTIONS`."""
    unknown = [n for n in names if n not in METRIC_CONVENTIONS]
    if unknown:
        raise KeyError(f"unknown metric names {unknown}; known: {sorted(METRIC_CONVENTIONS)}")
    return [METRIC_CONVENTIONS[n] for n in names]
