"""Paste restored faces back into the whole photo (docs/method.md, "Whole photos").

Notation, for one face of the photo: B is the photo upsampled by ``upscale`` (the background), A the 2x3
map from B's pixels to the aligned crop (R x R, R the model's resolution), D(B) the anti-aliased crop of
B (``faces.align.warp_to_face``), U(z) a crop warped back into B (bilinear, zero outside), m the soft
face mask (:func:`soft_face_mask`), y the crop the restorer saw and x_hat its restoration.

``classic`` (GFPGAN, CodeFormer, DifFace)::

    out = m U(x_hat) + (1 - m) B

replaces the whole face by a resampled R x R image, so all the detail B holds above the crop's band is
lost: a 320 px face restored at 64 px comes back 5x blurrier than it went in, sharp or not.

``resolution_aware`` (this repository's, the default) splits B into the band the model resolves and the
rest, B = U(D(B)) + H with H = B - U(D(B)), and writes::

    out = B + m [ w_c U(x_hat - y) - (1 - w_h) H ]

* the restorer contributes only its correction x_hat - y, in its own band, weighted by w_c;
* the input keeps the fraction w_h of its high band H, the detail the model cannot see.

With w_c = 1 and w_h = 0 this is ``classic`` (for upscale 1, where D(B) = y); with an identity restorer
and w_h = 1 it returns B unchanged, at any face size. Both weights follow the estimated degradation of
the face: d = sigma*(x_hat, y) = argmin_s ||G_s * x_hat - y||^2 (``data.sigma_star.sigma_star``), the
equivalent Gaussian blur, in crop pixels, that maps the restoration onto the input crop. A restorer blurs
even a clean face a little (its own d_0, a property of the network); the excess e = max(0, d - d_0) is
the blur of the input itself. Seen through the crop, a blur of e crop pixels multiplies the crop's band
edge (1/(2k) cycles per pixel of a face k times larger than the crop, where the blur is e k pixels) by
exp(-2 pi^2 (e k)^2 / (2k)^2) = exp(-(e / e_0)^2), e_0 = sqrt(2) / pi ~ 0.45: the input's high band H is
mostly the face's own detail for e << e_0 and mostly artefacts (interpolation, JPEG blocks, noise)
beyond. Hence::

    w_h = exp(-(e / d_h)^2),    w_c = w_max (1 - exp(-(e / d_c)^2))

A sharp face keeps its detail and its own low band (the restorer's correction would then be mostly its
own error); a degraded one takes the correction and sheds the high band.

The correction itself splits under the same blur d::

    x_hat - y = (x_hat - G_d x_hat) + (G_d x_hat - y)

The first term is the detail the restorer adds above the input's blur; the second, the misfit, is where
the restoration, blurred as the input is, still disagrees with it: the artefacts it removes (JPEG blocks,
noise) and whatever it changed of what the input does show, which costs fidelity at every frequency the
input resolves. The paste uses the restoration with its misfit weighted by w_m::

    x_m = x_hat - (1 - w_m) (G_d x_hat - y),    x_m - y = (x_hat - G_d x_hat) + w_m (G_d x_hat - y)

in place of x_hat: a back-projection step of size 1 - w_m (Irani & Peleg 1991). w_m = 1 pastes x_hat as it
is; an identity restorer (x_hat = y, d = 0) still gives x_m = y. G_d is ``data.blur.gaussian_blur``, the
blur d was estimated with.

d_0, d_h, d_c (as sigma_512, in 512-pixel units), w_max and w_m are the ``paste`` section of the sampling
config, measured on faces that are not the evaluation's (``benchmarks/bench_whole_photo.py``;
docs/whole_photos.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from faces.align import AlignedFaces, detect_and_align, warp_to_face

PASTE_MODES = ("resolution_aware", "classic")
MASK_EDGE_FRACTION = 1.0 / 20.0  # soft-mask edge width relative to sqrt(face footprint area), as facexlib


@dataclass
class PasteConfig:
    """The ``paste`` section of a sampling config (module docstring). Blur widths are resolution-free,
    sigma_512 = sigma * 512 / R for a crop of R pixels, like every sigma of a config. The defaults are the
    demo configuration's fit (configs/sample/dynfacerestore_demo.yaml)."""

    mode: str = "resolution_aware"      # resolution_aware | classic
    restorer_sigma_512: float = 5.6     # d_0: what the restorer blurs a clean face by
    high_band_sigma_512: float = 12.0   # d_h: w_h = exp(-(e / d_h)^2), e = max(0, d - d_0)
    correction_sigma_512: float = 0.8   # d_c: w_c = w_max (1 - exp(-(e / d_c)^2))
    correction_max: float = 1.0         # w_max
    misfit_weight: float = 0.5          # w_m: x_m = x_hat - (1 - w_m) (G_d x_hat - y)


def check_paste_config(cfg) -> None:
    """ValueError naming the first bad entry of a ``paste`` section."""
    if cfg.mode not in PASTE_MODES:
        raise ValueError(f"paste.mode = {cfg.mode!r}; allowed: {', '.join(PASTE_MODES)}")
    for key in ("high_band_sigma_512", "correction_sigma_512"):
        if not float(getattr(cfg, key)) > 0:
            raise ValueError(f"paste.{key} = {getattr(cfg, key)}; must be > 0")
    if not float(cfg.restorer_sigma_512) >= 0:
        raise ValueError(f"paste.restorer_sigma_512 = {cfg.restorer_sigma_512}; must be >= 0")
    for key in ("correction_max", "misfit_weight"):
        if not 0.0 <= float(getattr(cfg, key)) <= 1.0:
            raise ValueError(f"paste.{key} = {getattr(cfg, key)}; must lie in [0, 1]")


def band_weights(degradation: float, resolution: int, cfg) -> Tuple[float, float]:
    """(w_c, w_h) of the module docstring for a face of estimated degradation d (pixels of its
    ``resolution`` x ``resolution`` crop)."""
    excess = max(0.0, float(degradation) * 512.0 / resolution - float(cfg.restorer_sigma_512))
    w_h = float(np.exp(-(excess / float(cfg.high_band_sigma_512)) ** 2))
    w_c = float(cfg.correction_max) * (1.0 - float(np.exp(-(excess / float(cfg.correction_sigma_512)) ** 2)))
    return w_c, w_h


def degradation_estimates(restored: Sequence[np.ndarray], crops: Sequence[np.ndarray]) -> List[float]:
    """d = sigma*(x_hat, y) per face (crop pixels, module docstring), in one batched search. A face the
    restorer left unchanged has d = 0 exactly (the Fourier search resolves sigma* only to about 0.2 px when
    two images are nearly equal and smooth, where the blur's taps are below 1e-7)."""
    if not restored:
        return []
    import torch

    from data.sigma_star import sigma_star

    def stack(images: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(i, dtype=np.float64) for i in images])).permute(0, 3, 1, 2)

    found = sigma_star(stack(restored), stack(crops)).tolist()
    return [0.0 if np.array_equal(x, y) else float(d) for x, y, d in zip(restored, crops, found)]


def misfit_weighted(restored: np.ndarray, crop: np.ndarray, degradation: float, misfit_weight: float) -> np.ndarray:
    """x_m = x_hat - (1 - w_m) (G_d x_hat - y) of the module docstring (float32 HxWx3), d = ``degradation``
    in crop pixels."""
    import torch

    from data.blur import gaussian_blur

    x_hat = np.asarray(restored, dtype=np.float32)
    blurred = gaussian_blur(torch.from_numpy(x_hat).permute(2, 0, 1)[None], float(degradation))[0]
    misfit = blurred.permute(1, 2, 0).numpy() - np.asarray(crop, dtype=np.float32)
    return x_hat - (1.0 - float(misfit_weight)) * misfit


def _homogeneous(affine: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(affine, dtype=np.float64), [0.0, 0.0, 1.0]])


def face_to_upsampled(affine: np.ndarray, upscale: float = 1) -> np.ndarray:
    """2x3 map from aligned-face pixels to pixels of the background upsampled by ``upscale``.

    Composes the inverse of ``affine`` (image -> face) with x -> s x + (s - 1) / 2 (half-pixel centres).
    """
    offset = (upscale - 1) / 2.0
    up = np.array([[upscale, 0.0, offset], [0.0, upscale, offset], [0.0, 0.0, 1.0]])
    return (up @ np.linalg.inv(_homogeneous(affine)))[:2]


def soft_face_mask(face_size: Tuple[int, int], inverse_affine: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """Blend weights in [0, 1] (HxW) for a face warped by ``inverse_affine`` into an ``out_hw`` image.

    The warped footprint is eroded by 2e pixels and blurred by a Gaussian of std e (kernel 4e+1), with
    e = sqrt(footprint area) * MASK_EDGE_FRACTION, so the weight falls to ~0 inside the footprint's edge.
    """
    h, w = out_hw
    footprint = cv2.warpAffine(np.ones(face_size, np.float32), inverse_affine, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    footprint = (footprint > 0.999).astype(np.float32)
    edge = max(1, int(round(np.sqrt(footprint.sum()) * MASK_EDGE_FRACTION)))
    core = cv2.erode(footprint, np.ones((4 * edge + 1, 4 * edge + 1), np.uint8))
    return cv2.GaussianBlur(core, (4 * edge + 1, 4 * edge + 1), edge, borderType=cv2.BORDER_CONSTANT)


def warp_from_face(face: np.ndarray, inverse_affine: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """U(face): a crop warped into an ``out_hw`` image by ``inverse_affine`` (bilinear, zero outside)."""
    h, w = out_hw
    return cv2.warpAffine(np.asarray(face, dtype=np.float32), inverse_affine, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def split_bands(background: np.ndarray, affine: np.ndarray, face_size: int, upscale: float = 1
                ) -> Tuple[np.ndarray, np.ndarray]:
    """(U(D(B)), H = B - U(D(B))) of the module docstring for the face aligned by ``affine`` (image -> face)
    in ``background`` = the image upsampled by ``upscale``. Linear in B; the two parts sum to B exactly."""
    bg = np.asarray(background, dtype=np.float32)
    inverse = face_to_upsampled(affine, upscale)
    low = warp_from_face(warp_to_face(bg, cv2.invertAffineTransform(inverse), face_size), inverse, bg.shape[:2])
    return low, bg - low


@dataclass
class FacePaste:
    """What pasting one face needs: the restoration to paste (x_hat for ``classic``, x_m of
    :func:`aware_paste` otherwise), the crop it was restored from, the 2x3 alignment (image -> face) and the
    weights (w_c, w_h) of :func:`band_weights` (None: ``classic``)."""

    restored: np.ndarray
    crop: np.ndarray
    affine: np.ndarray
    weights: Optional[Tuple[float, float]] = None


def paste_terms(background: np.ndarray, face: FacePaste, upscale: float = 1, high_band: bool = True
                ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(m, U(x_hat - y), H) of the module docstring for one face in ``background``: the output is
    B + m (w_c U(x_hat - y) - (1 - w_h) H), linear in the weights. H (a second warp pair) is None without
    ``high_band``."""
    bg = np.asarray(background, dtype=np.float32)
    inverse = face_to_upsampled(face.affine, upscale)
    size = face.restored.shape[:2]
    mask = soft_face_mask(size, inverse, bg.shape[:2])[:, :, None]
    correction = warp_from_face(np.asarray(face.restored, np.float32) - np.asarray(face.crop, np.float32), inverse,
                                bg.shape[:2])
    return mask, correction, split_bands(bg, face.affine, size[0], upscale)[1] if high_band else None


def paste_face(background: np.ndarray, face: FacePaste, upscale: float = 1) -> np.ndarray:
    """``background`` with one face pasted (module docstring); ``classic`` when ``face.weights`` is None."""
    bg = np.asarray(background, dtype=np.float32)
    if face.weights is None:
        inverse = face_to_upsampled(face.affine, upscale)
        mask = soft_face_mask(face.restored.shape[:2], inverse, bg.shape[:2])[:, :, None]
        return mask * warp_from_face(face.restored, inverse, bg.shape[:2]) + (1.0 - mask) * bg
    w_c, w_h = face.weights
    mask, correction, high = paste_terms(bg, face, upscale, high_band=w_h < 1.0)
    update = w_c * correction if high is None else w_c * correction - (1.0 - w_h) * high
    return bg + mask * update


def bicubic_upsample(img: np.ndarray, upscale: float) -> np.ndarray:
    """Default background upsampler: cv2 bicubic resize by ``upscale``, clipped to [0, 1]."""
    if upscale == 1:
        return np.asarray(img, dtype=np.float32).copy()
    h, w = img.shape[:2]
    size = (int(round(w * upscale)), int(round(h * upscale)))
    return np.clip(cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def aware_paste(restored: np.ndarray, crop: np.ndarray, affine: np.ndarray, degradation: float, cfg) -> FacePaste:
    """The resolution-aware :class:`FacePaste` of one face of estimated ``degradation`` (crop pixels): its
    misfit-weighted restoration x_m and the weights of :func:`band_weights` (module docstring)."""
    weighted = misfit_weighted(restored, crop, degradation, cfg.misfit_weight)
    return FacePaste(weighted, crop, affine, band_weights(degradation, restored.shape[0], cfg))


def face_pastes(restored: Sequence[np.ndarray], crops: Sequence[np.ndarray], affines: Sequence[np.ndarray],
                cfg) -> List[FacePaste]:
    """One :class:`FacePaste` per face with its weights from ``cfg`` (a ``paste`` section) and the face's
    estimated degradation (:func:`degradation_estimates`)."""
    if not len(restored) == len(crops) == len(affines):
        raise ValueError(f"{len(restored)} restored faces, {len(crops)} crops and {len(affines)} alignments")
    for face, crop in zip(restored, crops):
        if face.shape != crop.shape or face.ndim != 3 or face.shape[0] != face.shape[1]:
            raise ValueError(f"a restored face has shape {face.shape}, its crop {crop.shape}: need equal squares")
    if cfg.mode == "classic":
        return [FacePaste(face, crop, affine) for face, crop, affine in zip(restored, crops, affines)]
    degradations = degradation_estimates(restored, crops)
    return [aware_paste(face, crop, affine, d, cfg)
            for face, crop, affine, d in zip(restored, crops, affines, degradations)]


def paste_faces(img: np.ndarray, faces: Sequence[FacePaste], upscale: float,
                bg_upsampler: Optional[Callable[[np.ndarray, float], np.ndarray]] = None) -> np.ndarray:
    """The upsampled ``img`` (``bg_upsampler``, default :func:`bicubic_upsample`) with each face pasted
    (:func:`paste_face`), clipped to [0, 1]. With no face it is the upsampled background."""
    out = (bg_upsampler or bicubic_upsample)(img, upscale)
    expected_hw = (int(round(img.shape[0] * upscale)), int(round(img.shape[1] * upscale)))
    if out.shape[:2] != expected_hw:
        raise ValueError(f"bg_upsampler returned {out.shape[:2]}, expected {expected_hw} for upscale {upscale}")
    for face in faces:
        out = paste_face(out, face, upscale)
    return np.clip(out, 0.0, 1.0)


@dataclass
class WholeImageResult:
    """Output of :func:`restore_whole_image`: the pasted image, the detected and aligned faces, the
    restorations and how each was pasted."""

    image: np.ndarray
    faces: AlignedFaces
    restored_faces: List[np.ndarray]
    pastes: List[FacePaste] = field(default_factory=list)


def restore_whole_image(img: np.ndarray, detector, restore_fn: Callable[[List[np.ndarray]], Sequence[np.ndarray]],
                        face_size: int, upscale: float, cfg=None,
                        bg_upsampler: Optional[Callable[[np.ndarray, float], np.ndarray]] = None
                        ) -> WholeImageResult:
    """Detect -> align -> restore all faces in one call -> paste back (``cfg``: a ``paste`` section, default
    :class:`PasteConfig`).

    ``restore_fn(list of aligned HxWx3 [0, 1] faces) -> same-size restored faces``. (The command line
    batches faces across images instead, with the same steps :func:`detect_and_align` and :func:`paste_faces`.)
    """
    faces = detect_and_align(img, detector, face_size)
    restored = list(restore_fn(faces.crops)) if faces.crops else []
    pastes = face_pastes(restored, faces.crops, faces.affines, cfg or PasteConfig())
    return WholeImageResult(paste_faces(img, pastes, upscale, bg_upsampler), faces, restored, pastes)
