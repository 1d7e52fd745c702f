"""Paste restored faces back into the whole photo (docs/method.md section 10).

Per face: B the photo upsampled by ``upscale``, D(B) its anti-aliased R x R crop, U(z) a crop warped back into B,
m the soft face mask (:func:`soft_face_mask`), y the crop the restorer saw, x_hat its restoration,
H = B - U(D(B)) the high band the model cannot see.

    classic (GFPGAN, CodeFormer, DifFace):   out = m U(x_hat) + (1 - m) B
    resolution_aware (the default):          out = B + m [ w_c U(x_m - y) - (1 - w_h) H ]

    e   = max(0, d - d_0(k)),   d = sigma*(x_hat, y)                     (the input's blur, crop pixels)
    d_0(k) = d_0 + d_k log2 max(1, k),   k = the face's size in photo pixels / R
    q   = sqrt(max(0, s_y^2 - s_0^2)),   s_y = MAD(finest Haar band of y) / 0.6745   (its noise)
    w_c = w_max (1 - exp(-(e / d_c)^2 - (q / r_c)^2))
    w_h = exp(-(e / d_h)^2) (1 - nu (1 - exp(-(q_B / r_h)^2))),   q_B = sqrt(max(0, s_B^2 - s_0^2))
    s_B, nu = the photo's finest-band noise level at the face and the noise share of H (:func:`photo_noise`)
    x_m = x_hat - (1 - w_m) (G_d x_hat - y)                              (back-projection, Irani & Peleg 1991)

d_0(k): on clean faces d scatters by about +-0.1 crop pixels from face to face; a mild blur of the photo moves
it by as much on a face 1.5x the model, by a quarter of that at 3x, where the model's band holds a ninth of the
face's spectrum and a correction taken on the scatter costs PSNR and LPIPS: a larger face needs more blur.
s_B: H holds the photo's finest band, so the photo's noise level, not the crop's, says whether nu is noise: a
face 2x the model averages 12/255 of noise (and JPEG) in its crop down to a clean face's s_y, while its high
band keeps the noise. (:class:`FaceEstimate` holds d, s_y, nu, s_B, k.) d_0, d_k, d_h, d_c (sigma_512 units),
w_max, w_m, s_0, r_c, r_h are the sampling config's ``paste`` section; ``paste.methods.<method>`` replaces them
for one ``sampler.method`` (d_0 belongs to the restorer). Each face's record names what the weights did
(:func:`paste_decision`): ``kept`` (w_c < 0.1, w_h > 0.9), ``restored`` (w_c >= 0.5) or ``partly``; a kept face
is pasted with (w_c, w_h) = (0, 1) (:func:`paste_weights`), so it comes back as the input exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from faces.align import AlignedFaces, detect_and_align, pixels_per_face_pixel, warp_to_face

PASTE_MODES = ("resolution_aware", "classic")
MASK_EDGE_FRACTION = 1.0 / 20.0  # soft-mask edge width relative to sqrt(face footprint area), as facexlib


@dataclass
class PasteConfig:
    """The ``paste`` section of a sampling config (module docstring). Blur widths are resolution-free,
    sigma_512 = sigma * 512 / R for a crop of R pixels, like every sigma of a config. The defaults are the
    demo configuration's fit (configs/sample/dynfacerestore_demo.yaml)."""

    mode: str = "resolution_aware"  # resolution_aware | classic
    restorer_sigma_512: float = 4.4  # d_0: what the restorer blurs a clean face by
    scale_sigma_512: float = 0.8  # d_k: d_0(k) = d_0 + d_k log2 max(1, k), k the face's size / R
    high_band_sigma_512: float = 12.0  # d_h: w_h = exp(-(e / d_h)^2), e = max(0, d - d_0(k))
    correction_sigma_512: float = 0.8  # d_c: w_c = w_max (1 - exp(-(e / d_c)^2))
    correction_max: float = 1.0  # w_max
    misfit_weight: float = 0.5  # w_m: x_m = x_hat - (1 - w_m) (G_d x_hat - y)
    clean_noise: float = 0.011765  # s_0: the finest-band noise level (s_y, s_B) of a clean face
    correction_noise: float = 0.015686  # r_c: w_c = w_max (1 - exp(-(e / d_c)^2 - (q / r_c)^2))
    high_band_noise: float = 0.011765  # r_h: w_h = exp(-(e / d_h)^2) (1 - nu (1 - exp(-(q_B / r_h)^2)))
    methods: Dict[str, Dict[str, float]] = field(default_factory=dict)  # per sampler.method: entries above replaced


METHOD_KEYS = (
    "restorer_sigma_512",
    "scale_sigma_512",
    "high_band_sigma_512",
    "correction_sigma_512",
    "correction_max",
    "misfit_weight",
    "clean_noise",
    "correction_noise",
    "high_band_noise",
)  # what paste.methods.<method> may replace


def check_paste_config(cfg) -> None:
    """ValueError naming the first bad entry of a ``paste`` section."""
    for method, entries in cfg.methods.items():
        unknown = sorted(set(entries) - set(METHOD_KEYS))
        if unknown:
            raise ValueError(f"paste.methods.{method}.{unknown[0]}: unknown; allowed: {', '.join(METHOD_KEYS)}")
    if cfg.mode not in PASTE_MODES:
        raise ValueError(f"paste.mode = {cfg.mode!r}; allowed: {', '.join(PASTE_MODES)}")
    for key in ("high_band_sigma_512", "correction_sigma_512", "correction_noise", "high_band_noise"):
        if not float(getattr(cfg, key)) > 0:
            raise ValueError(f"paste.{key} = {getattr(cfg, key)}; must be > 0")
    for key in ("restorer_sigma_512", "scale_sigma_512", "clean_noise"):
        if not float(getattr(cfg, key)) >= 0:
            raise ValueError(f"paste.{key} = {getattr(cfg, key)}; must be >= 0")
    for key in ("correction_max", "misfit_weight"):
        if not 0.0 <= float(getattr(cfg, key)) <= 1.0:
            raise ValueError(f"paste.{key} = {getattr(cfg, key)}; must lie in [0, 1]")


@dataclass
class FaceEstimate:
    """The degradation estimates of one face (module docstring): ``blur`` d (pixels of its crop),
    ``crop_noise`` s_y (noise level of its crop), ``noise_share`` nu (of the input's high band, in [0, 1]),
    ``photo_noise`` s_B (the photo's noise level at the face) and ``scale`` k (photo pixels per crop pixel)."""

    blur: float
    crop_noise: float = 0.0
    noise_share: float = 0.0
    photo_noise: float = 0.0
    scale: float = 1.0


def band_weights(estimate: FaceEstimate, resolution: int, cfg) -> Tuple[float, float]:
    """(w_c, w_h) of the module docstring for a face of ``resolution`` x ``resolution`` crop pixels."""
    restorer_blur = float(cfg.restorer_sigma_512) + float(cfg.scale_sigma_512) * np.log2(
        max(1.0, float(estimate.scale))
    )
    excess = max(0.0, float(estimate.blur) * 512.0 / resolution - restorer_blur)
    removed = np.sqrt(max(0.0, float(estimate.crop_noise) ** 2 - float(cfg.clean_noise) ** 2))
    blur_h = (excess / float(cfg.high_band_sigma_512)) ** 2
    blur_c, noise_c = (excess / float(cfg.correction_sigma_512)) ** 2, (removed / float(cfg.correction_noise)) ** 2
    photo_excess = np.sqrt(max(0.0, float(estimate.photo_noise) ** 2 - float(cfg.clean_noise) ** 2))
    confirmed = 1.0 - float(np.exp(-((photo_excess / float(cfg.high_band_noise)) ** 2)))
    w_h = float(np.exp(-blur_h)) * (1.0 - float(estimate.noise_share) * confirmed)
    w_c = float(cfg.correction_max) * (1.0 - float(np.exp(-blur_c - noise_c)))
    return w_c, w_h


DECISIONS = ("kept", "partly", "restored")
KEPT_CORRECTION, KEPT_HIGH_BAND, RESTORED_CORRECTION = 0.1, 0.9, 0.5  # the decisions' thresholds on w_c, w_h


def paste_weights(estimate: FaceEstimate, resolution: int, cfg) -> Tuple[float, float]:
    """The (w_c, w_h) a face is pasted with: :func:`band_weights`, or (0, 1) where they judge it clean
    (``kept``, module docstring), so that a kept face comes back as the input exactly."""
    w_c, w_h = band_weights(estimate, resolution, cfg)
    return (0.0, 1.0) if paste_decision((w_c, w_h)) == "kept" else (w_c, w_h)


def paste_decision(weights: Optional[Tuple[float, float]]) -> str:
    """What a paste did to a face (module docstring); ``classic`` (None) replaces it: ``restored``."""
    if weights is None:
        return "restored"
    w_c, w_h = weights
    if w_c >= RESTORED_CORRECTION:
        return "restored"
    return "kept" if w_c < KEPT_CORRECTION and w_h > KEPT_HIGH_BAND else "partly"


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


def misfit(restored: np.ndarray, crop: np.ndarray, degradation: float) -> np.ndarray:
    """r = G_d x_hat - y of the module docstring (float32 HxWx3), d = ``degradation`` in crop pixels."""
    import torch

    from data.blur import gaussian_blur

    x_hat = torch.from_numpy(np.asarray(restored, dtype=np.float32)).permute(2, 0, 1)[None]
    blurred = gaussian_blur(x_hat, float(degradation))[0]
    return blurred.permute(1, 2, 0).numpy() - np.asarray(crop, dtype=np.float32)


def misfit_weighted(restored: np.ndarray, crop: np.ndarray, degradation: float, misfit_weight: float) -> np.ndarray:
    """x_m = x_hat - (1 - w_m) (G_d x_hat - y) of the module docstring (float32 HxWx3), d = ``degradation``
    in crop pixels."""
    return np.asarray(restored, dtype=np.float32) - (1.0 - float(misfit_weight)) * misfit(restored, crop, degradation)


def crop_noise(crop: np.ndarray) -> float:
    """s_y of the module docstring: :func:`finest_band_noise` over the central R/2 x R/2 square of an
    R x R crop."""
    size = crop.shape[0]
    centre = np.zeros(crop.shape[:2], bool)
    centre[size // 4 : size - size // 4, size // 4 : size - size // 4] = True
    return finest_band_noise(crop, centre)


def finest_band_noise(img: np.ndarray, where: np.ndarray) -> float:
    """Noise std of ``img`` (HxWx3) from its finest Haar band: median |HH| / 0.6745 over the 2 x 2 blocks
    whose four pixels lie in ``where`` (HxW bool), all channels pooled; HH = (a - b - c + d) / 2 has the
    std s of white noise of std s. 0 when no block lies in ``where``."""
    h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
    x = np.asarray(img[:h, :w], dtype=np.float64)
    hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    inside = where[0:h:2, 0:w:2] & where[0:h:2, 1:w:2] & where[1:h:2, 0:w:2] & where[1:h:2, 1:w:2]
    values = np.abs(hh[inside])
    return float(np.median(values) / 0.6745) if values.size else 0.0


NOISE_FIELD_SEED = 0  # the white-noise image whose high band gives c_H (photo_noise)


def photo_noise(photo: np.ndarray, affine: np.ndarray, face_size: int) -> Tuple[float, float]:
    """(s_B, nu = min(1, s_B^2 c_H / E[H^2])) of the module docstring for the face aligned by ``affine`` in
    ``photo`` (upscale 1): s_B is :func:`finest_band_noise` where the soft face mask m > 0.5, expectations are
    means weighted by m, c_H = E[H(n)^2] of unit white noise n. nu is 0 when the high band is empty."""
    img = np.asarray(photo, dtype=np.float32)
    mask = soft_face_mask((face_size, face_size), face_to_upsampled(affine), img.shape[:2])
    return _wiener_share(img, mask, lambda x: split_bands(x, affine, face_size)[1])


def _wiener_share(
    img: np.ndarray, mask: np.ndarray, high_band: Callable[[np.ndarray], np.ndarray]
) -> Tuple[float, float]:
    """(s_B, nu) of :func:`photo_noise` for the band split whose high band is ``high_band(image)``."""
    noise = finest_band_noise(img, mask > 0.5)
    weight = mask[:, :, None] / max(float(mask.sum()) * img.shape[2], 1e-12)
    power = float(np.sum(weight * high_band(img).astype(np.float64) ** 2))
    if power <= 0.0:
        return noise, 0.0
    unit = np.random.default_rng(NOISE_FIELD_SEED).standard_normal(img.shape).astype(np.float32)
    share = float(np.sum(weight * high_band(unit).astype(np.float64) ** 2))
    return noise, min(1.0, noise**2 * share / power)


def face_estimate(
    restored: np.ndarray, crop: np.ndarray, blur: float, noise: Callable[[], Tuple[float, float]], scale: float
) -> FaceEstimate:
    """The :class:`FaceEstimate` of one face of blur d = ``blur``, (s_B, nu) = ``noise()``, size k = ``scale``;
    a face the restorer left unchanged (x_hat = y) is judged clean, d = s_y = nu = s_B = 0: the paste takes
    nothing it did not."""
    if np.array_equal(restored, crop):
        return FaceEstimate(0.0, scale=scale)
    level, share = noise()
    return FaceEstimate(blur, crop_noise(crop), share, level, scale)


def face_estimates(
    photo: np.ndarray, restored: Sequence[np.ndarray], crops: Sequence[np.ndarray], affines: Sequence[np.ndarray]
) -> List[FaceEstimate]:
    """The :func:`face_estimate` of each face of ``photo`` (module docstring), d in one batched search."""
    blurs = degradation_estimates(restored, crops)
    return [
        face_estimate(
            x,
            y,
            d,
            lambda affine=affine, size=x.shape[0]: photo_noise(photo, affine, size),
            pixels_per_face_pixel(affine),
        )
        for x, y, affine, d in zip(restored, crops, affines, blurs)
    ]


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
    footprint = cv2.warpAffine(
        np.ones(face_size, np.float32),
        inverse_affine,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    footprint = (footprint > 0.999).astype(np.float32)
    edge = max(1, int(round(np.sqrt(footprint.sum()) * MASK_EDGE_FRACTION)))
    core = cv2.erode(footprint, np.ones((4 * edge + 1, 4 * edge + 1), np.uint8))
    return cv2.GaussianBlur(core, (4 * edge + 1, 4 * edge + 1), edge, borderType=cv2.BORDER_CONSTANT)


def warp_from_face(face: np.ndarray, inverse_affine: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """U(face): a crop warped into an ``out_hw`` image by ``inverse_affine`` (bilinear, zero outside)."""
    h, w = out_hw
    return cv2.warpAffine(
        np.asarray(face, dtype=np.float32),
        inverse_affine,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )


def split_bands(
    background: np.ndarray, affine: np.ndarray, face_size: int, upscale: float = 1
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
    weights (w_c, w_h) of :func:`paste_weights` (None: ``classic``)."""

    restored: np.ndarray
    crop: np.ndarray
    affine: np.ndarray
    weights: Optional[Tuple[float, float]] = None
    estimate: Optional[FaceEstimate] = None


def paste_terms(
    background: np.ndarray, face: FacePaste, upscale: float = 1, high_band: bool = True
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(m, U(x_hat - y), H) of the module docstring for one face in ``background``: the output is
    B + m (w_c U(x_hat - y) - (1 - w_h) H), linear in the weights. H (a second warp pair) is None without
    ``high_band``."""
    bg = np.asarray(background, dtype=np.float32)
    inverse = face_to_upsampled(face.affine, upscale)
    size = face.restored.shape[:2]
    mask = soft_face_mask(size, inverse, bg.shape[:2])[:, :, None]
    correction = warp_from_face(
        np.asarray(face.restored, np.float32) - np.asarray(face.crop, np.float32), inverse, bg.shape[:2]
    )
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


def aware_paste(restored: np.ndarray, crop: np.ndarray, affine: np.ndarray, estimate: FaceEstimate, cfg) -> FacePaste:
    """The resolution-aware :class:`FacePaste` of one face of degradation ``estimate``: its misfit-weighted
    restoration x_m and the weights of :func:`paste_weights` (module docstring)."""
    weighted = misfit_weighted(restored, crop, estimate.blur, cfg.misfit_weight)
    return FacePaste(weighted, crop, affine, paste_weights(estimate, restored.shape[0], cfg), estimate)


def face_pastes(
    photo: np.ndarray, restored: Sequence[np.ndarray], crops: Sequence[np.ndarray], affines: Sequence[np.ndarray], cfg
) -> List[FacePaste]:
    """One :class:`FacePaste` per face of ``photo`` (the input, before upsampling) with its weights from
    ``cfg`` (a ``paste`` section) and the face's estimates (:func:`face_estimates`)."""
    if not len(restored) == len(crops) == len(affines):
        raise ValueError(f"{len(restored)} restored faces, {len(crops)} crops and {len(affines)} alignments")
    for face, crop in zip(restored, crops):
        if face.shape != crop.shape or face.ndim != 3 or face.shape[0] != face.shape[1]:
            raise ValueError(f"a restored face has shape {face.shape}, its crop {crop.shape}: need equal squares")
    if cfg.mode == "classic":
        return [FacePaste(face, crop, affine) for face, crop, affine in zip(restored, crops, affines)]
    estimates = face_estimates(photo, restored, crops, affines)
    return [
        aware_paste(face, crop, affine, estimate, cfg)
        for face, crop, affine, estimate in zip(restored, crops, affines, estimates)
    ]


def paste_faces(
    img: np.ndarray,
    faces: Sequence[FacePaste],
    upscale: float,
    bg_upsampler: Optional[Callable[[np.ndarray, float], np.ndarray]] = None,
) -> np.ndarray:
    """The upsampled ``img`` (``bg_upsampler``, default :func:`bicubic_upsample`) with each face pasted
    (:func:`paste_face`), clipped to [0, 1]. With no face it is the upsampled background."""
    out = (bg_upsampler or bicubic_upsample)(img, upscale)
    expected_hw = (int(round(img.shape[0] * upscale)), int(round(img.shape[1] * upscale)))
    if out.shape[:2] != expected_hw:
        raise ValueError(f"bg_upsampler returned {out.shape[:2]}, expected {expected_hw} for upscale {upscale}")
    for face in faces:
        out = paste_face(out, face, upscale)
    return np.clip(out, 0.0, 1.0)


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """U of an aligned face (:func:`paste_aligned`): a square image resized to ``size`` x ``size``, bilinear,
    pixel centres matched (edges replicated)."""
    return cv2.resize(np.asarray(img, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def paste_aligned(image: np.ndarray, restored: np.ndarray, crop: np.ndarray, cfg) -> Tuple[np.ndarray, FacePaste]:
    """An aligned face of S x S pixels (``image``) restored from ``crop`` = its R x R copy, merged at S x S by
    the module docstring's rule with m = 1 (the face fills the image) and U = :func:`resize_bilinear` to S,
    the band split B = U(y) + H: out = B + w_c U(x_m - y) - (1 - w_h) H; ``classic`` writes U(x_hat).
    Returns the merged image (clipped to [0, 1]) and the face's :class:`FacePaste`."""
    side, size = image.shape[0], restored.shape[0]
    if image.shape[:2] != (side, side) or restored.shape != crop.shape:
        raise ValueError(
            f"aligned face {image.shape[:2]}, restored {restored.shape}, crop {crop.shape}: "
            "need a square face and a restoration the size of its crop"
        )
    img = np.asarray(image, dtype=np.float32)
    if cfg.mode == "classic":
        return np.clip(resize_bilinear(restored, side), 0.0, 1.0), FacePaste(restored, crop, np.eye(2, 3))

    def high_band(x: np.ndarray) -> np.ndarray:
        return x - resize_bilinear(cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA), side)

    estimate = face_estimate(
        restored,
        crop,
        degradation_estimates([restored], [crop])[0],
        lambda: _wiener_share(img, np.ones((side, side), np.float32), high_band),
        side / size,
    )
    face = aware_paste(restored, crop, np.eye(2, 3), estimate, cfg)
    w_c, w_h = face.weights
    correction = resize_bilinear(face.restored - np.asarray(crop, dtype=np.float32), side)
    return np.clip(img + w_c * correction - (1.0 - w_h) * (img - resize_bilinear(crop, side)), 0.0, 1.0), face


@dataclass
class WholeImageResult:
    """Output of :func:`restore_whole_image`: the pasted image, the detected and aligned faces, the
    restorations and how each was pasted."""

    image: np.ndarray
    faces: AlignedFaces
    restored_faces: List[np.ndarray]
    pastes: List[FacePaste] = field(default_factory=list)


def restore_whole_image(
    img: np.ndarray,
    detector,
    restore_fn: Callable[[List[np.ndarray]], Sequence[np.ndarray]],
    face_size: int,
    upscale: float,
    cfg=None,
    bg_upsampler: Optional[Callable[[np.ndarray, float], np.ndarray]] = None,
) -> WholeImageResult:
    """Detect -> align -> restore all faces in one call -> paste back (``cfg``: a ``paste`` section, default
    :class:`PasteConfig`).

    ``restore_fn(list of aligned HxWx3 [0, 1] faces) -> same-size restored faces``. (The command line
    batches faces across images instead, with the same steps :func:`detect_and_align` and :func:`paste_faces`.)
    """
    faces = detect_and_align(img, detector, face_size)
    restored = list(restore_fn(faces.crops)) if faces.crops else []
    pastes = face_pastes(img, restored, faces.crops, faces.affines, cfg or PasteConfig())
    return WholeImageResult(paste_faces(img, pastes, upscale, bg_upsampler), faces, restored, pastes)
