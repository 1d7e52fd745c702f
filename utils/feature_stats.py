"""Distances between two sets of image features: Fréchet distance (FID) and kernel inception distance (KID).

FID^2 = ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2))                       (Heusel et al., 2017)
KID   = unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, mean and std over subsets   (Binkowski et al., 2018)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch
from scipy import linalg

from utils.config import first_line

STATS_KEYS = ("mu", "sigma")
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000


class StatsError(ValueError):
    """A statistics file that cannot be read or has the wrong content; the message is one line."""


def feature_stats(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of (N, D) features, float64; N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"statistics need an (N, D) feature array with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """d^2 of the module docstring between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"statistics of different sizes: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
        )
    with warnings.catch_warnings():  # fewer samples than dimensions: singular covariances are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        offset = np.eye(len(mu1)) * eps
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    root = np.real(root)  # rounding leaves a tiny imaginary part on a PSD product
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x_i, y_j) = (x_i . y_j / d + 1)^3 for all rows, float64."""
    return (np.asarray(x, np.float64) @ np.asarray(y, np.float64).T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of the module docstring with :func:`polynomial_kernel`; both sets need >= 2 rows."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean()
    )


def kid_subset_size(n_a: int, n_b: int, max_size: int = KID_MAX_SUBSET) -> int:
    """``max_size`` rows, or half of the smaller set when it has fewer than 2 * max_size (so subsets differ)."""
    smaller = min(n_a, n_b)
    return max_size if smaller >= 2 * max_size else max(2, smaller // 2)


def kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> Tuple[float, float]:
    """(mean, std) of :func:`mmd2_unbiased` over random subsets (module docstring); subset size from
    :func:`kid_subset_size` unless given."""
    if len(features_a) < 2 or len(features_b) < 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"KID needs two (N >= 2, D) feature sets of one D, got {features_a.shape} and {features_b.shape}"
        )
    size = subset_size or kid_subset_size(len(features_a), len(features_b))
    if size > min(len(features_a), len(features_b)):
        raise ValueError(f"KID subset size {size} exceeds the smaller set ({min(len(features_a), len(features_b))})")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            features_a[rng.choice(len(features_a), size, replace=False)],
            features_b[rng.choice(len(features_b), size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def save_stats(path: Union[str, os.PathLike], mu: np.ndarray, sigma: np.ndarray, **info) -> Path:
    """Write ``mu``, ``sigma`` (and ``info`` scalars, e.g. the image count) to an ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, mu=mu, sigma=sigma, **info)
    os.replace(tmp, path)
    return path


def _numpy_globals() -> list:
    """What a pickled float numpy array needs from numpy, allowed for ``torch.load(weights_only=True)``;
    numpy 1's module path is named too (files written before numpy 2)."""
    reconstruct = np._core.multiarray._reconstruct
    return [
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        reconstruct,
        np.ndarray,
        np.dtype,
        np.dtypes.Float64DType,
        np.dtypes.Float32DType,
    ]


def load_stats(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from a statistics file (module docstring); StatsError with one line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise StatsError(f"{path}: statistics file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                mu, sigma = (data[k] if k in data.files else None for k in STATS_KEYS)
        else:
            with torch.serialization.safe_globals(_numpy_globals()):
                data = torch.load(path, map_location="cpu", weights_only=True)
            mu, sigma = (data.get(k) if isinstance(data, dict) else None for k in ("mean", "cov"))
    except Exception as err:  # noqa: BLE001 - any unreadable file is one line
        raise StatsError(f"{path}: cannot read statistics ({type(err).__name__}: {first_line(err)})") from None
    if mu is None or sigma is None:
        raise StatsError(f"{path}: no mean and covariance (expected keys {STATS_KEYS} in .npz, mean/cov in .pth)")
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != mu.shape * 2:
        raise StatsError(f"{path}: mean {mu.shape} and covariance {sigma.shape} do not match")
    return mu, sigma
