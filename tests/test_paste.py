"""The resolution-aware paste-back (faces.paste) against its definitions, on real faces in real photos.

* An identity restorer leaves the photo as it was, at every face size (smaller and larger than the crop)
  and rotation, through the whole-photo path with the default (resolution-aware) paste.
* With w_c = 1 and w_h = 0 the resolution-aware formula is the classic paste-back (upscale 1).
* The band split is linear, sums to the image, passes a grating well below the crop's Nyquist frequency
  to the low band and one well above it to the high band (hypothesis properties).
* The weights are monotone in the degradation and equal (0, 1) for an unchanged face; a face k times the
  model's size is weighed with the restorer's blur d_0(k) (closed form), so it takes no more correction than
  a smaller one; its k is read off the alignment (whole photos) or its side (aligned faces); the degradation
  of a restoration that is the input blurred by a known sigma is that sigma (the sigma* grid search).
* The misfit weight scales exactly what the blur does not explain: for y = G_d x_hat + n the pasted
  restoration is x_hat + (1 - w_m) n (a float64 spatial blur as the reference; hypothesis property).
* The noise estimates: the finest-band MAD of white noise is its std (hypothesis); the noise share of a
  face's high band matches the share computed from the known noise field (the split is linear).
* With the demo models (DynFaceRestore, its RM0 restorer alone, the zero-shot DBLM config) and the shipped
  paste section, a noise-only face is corrected (w_c > 0.5, closer to the HQ face) and a clean sharp face
  is kept exactly; through DifFace (its paste.methods section) both are kept; an identity restorer leaves
  even a noisy photo as it was.
* An aligned face larger than the model comes back at its own size (in the library and through the CLI).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.blur import gaussian_blur, kernel_radius
from data.face_composites import make_composite
from data.photo_degradation import single_degradation
from data.sigma_star import FINE_STEP
from faces.align import align_face, estimate_similarity, face_template
from faces.paste import (
    FaceEstimate,
    FacePaste,
    PasteConfig,
    band_weights,
    bicubic_upsample,
    check_paste_config,
    degradation_estimates,
    finest_band_noise,
    misfit_weighted,
    paste_aligned,
    paste_decision,
    paste_face,
    paste_weights,
    photo_noise,
    restore_whole_image,
    split_bands,
)
from inference.report import record_path
from proc_helpers import REPO_ROOT
from sample_config import load_sample_config
from sampler import FaceRestoreSampler
from utils.config import ConfigError
from utils.image_io import img2tensor, read_image, tensor2img, write_image

CROP = 64
DEMO_CONFIG = "configs/sample/dynfacerestore_demo.yaml"


class _KnownLandmarks:
    """A detector that returns the composite's true landmarks."""

    def __init__(self, landmarks):
        self.landmarks = np.asarray(landmarks)

    def detect(self, img):
        return np.zeros((len(self.landmarks), 5)), self.landmarks


@pytest.fixture(scope="module")
def celebref_faces(faces_hq_dir):
    return sorted((faces_hq_dir / "celebref512").rglob("*.png"))[:2]


@pytest.mark.parametrize("side,angle", [(40, 0.0), (64, 12.0), (100, -20.0), (190, 7.0), (320, 30.0)])
def test_identity_restorer_returns_the_photo(celebref_faces, side, angle):
    comp = make_composite(celebref_faces[:1], seed=side, size=(480, 640), face_px=(side, side), max_angle=0.0)
    # rotate the placement by hand so every size meets a different angle
    face = comp.faces[0]
    centre = face.landmarks.mean(0)
    rot = np.deg2rad(angle)
    lin = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    landmarks = (face.landmarks - centre) @ lin.T + centre
    for upscale in (1, 2):
        res = restore_whole_image(
            comp.image, _KnownLandmarks(landmarks[None]), lambda crops: [c.copy() for c in crops], CROP, upscale=upscale
        )
        assert res.pastes[0].weights == (0.0, 1.0)
        np.testing.assert_allclose(res.image, bicubic_upsample(comp.image, upscale), atol=1e-6)


def _scene(faces_hq_dir, side=200, angle=10.0, seed=0):
    path = sorted((faces_hq_dir / "celebref512").rglob("*.png"))[0]
    comp = make_composite([path], seed=seed, size=(360, 480), face_px=(side, side), max_angle=0.0)
    landmarks = comp.faces[0].landmarks
    c = landmarks.mean(0)
    rot = np.deg2rad(angle)
    landmarks = (landmarks - c) @ np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]).T + c
    return comp.image, landmarks


def test_weights_one_zero_is_the_classic_paste(faces_hq_dir):
    photo, landmarks = _scene(faces_hq_dir)
    crop, affine = align_face(photo, landmarks, CROP)
    restored = np.clip(crop[::-1] * 0.8 + 0.1, 0, 1)  # any other face
    classic = paste_face(photo, FacePaste(restored, crop, affine))
    aware = paste_face(photo, FacePaste(restored, crop, affine, (1.0, 0.0)))
    np.testing.assert_allclose(aware, classic, atol=2e-6)
    assert np.abs(classic - photo).max() > 0.3


def _grating(hw, freq, angle, phase):
    yy, xx = np.mgrid[: hw[0], : hw[1]].astype(np.float64)
    u = np.cos(angle) * xx + np.sin(angle) * yy
    g = 0.5 + 0.25 * np.cos(2 * np.pi * freq * u + phase)
    return np.repeat(g[:, :, None], 3, axis=2).astype(np.float32)


def _face_affine(hw, side, angle):
    """image -> crop similarity of a ``side`` px face centred in an ``hw`` image at ``angle`` degrees."""
    c = np.array([hw[1] / 2, hw[0] / 2])
    rot = np.deg2rad(angle)
    lin = side / CROP * np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    points = (face_template(CROP) - CROP / 2) @ lin.T + c
    return estimate_similarity(points, face_template(CROP))


def _inner(hw, side):
    """The central square of half the face's side (well inside the crop's footprint)."""
    h, w = hw
    r = side // 4
    return slice(h // 2 - r, h // 2 + r), slice(w // 2 - r, w // 2 + r)


@settings(max_examples=20, deadline=None)
@given(
    side=st.integers(96, 320),
    angle=st.floats(-30, 30),
    a=st.floats(-2, 2),
    b=st.floats(-2, 2),
    seed=st.integers(0, 2**16),
)
def test_band_split_is_linear_and_sums_to_the_image(side, angle, a, b, seed):
    """(Linear where the crop lies inside the photo: outside it the crop is padded with a constant gray.)"""
    hw = (480, 480)  # the crop of a 320 px face turned by 30 degrees spans 437 px
    rng = np.random.default_rng(seed)
    one, two = rng.random((*hw, 3)).astype(np.float32), rng.random((*hw, 3)).astype(np.float32)
    affine = _face_affine(hw, side, angle)
    low1, high1 = split_bands(one, affine, CROP)
    low2, high2 = split_bands(two, affine, CROP)
    low, high = split_bands(a * one + b * two, affine, CROP)
    scale = abs(a) + abs(b) + 1
    np.testing.assert_allclose(low + high, (a * one + b * two).astype(np.float32), atol=1e-6 * scale)
    np.testing.assert_allclose(low, a * low1 + b * low2, atol=1e-5 * scale)
    np.testing.assert_allclose(high, a * high1 + b * high2, atol=1e-5 * scale)


@settings(max_examples=25, deadline=None)
@given(k=st.floats(2.5, 5.0), angle=st.floats(-30, 30), direction=st.floats(0, np.pi), phase=st.floats(0, 2 * np.pi))
def test_band_edge(k, angle, direction, phase):
    """A grating at a quarter of the crop's Nyquist frequency 1/(2k) stays in the low band; one at twice it
    (at most 0.4 cycles per pixel, below the photo's own Nyquist frequency) goes to the high band."""
    hw, side = (360, 360), int(round(k * CROP))
    affine = _face_affine(hw, side, angle)
    inner = _inner(hw, side)
    for freq, band in ((0.25 / (2 * k), 0), (2.0 / (2 * k), 1)):
        img = _grating(hw, freq, direction, phase)
        parts = split_bands(img, affine, CROP)
        signal = img[inner] - 0.5
        kept = parts[band][inner] - (0.5 if band == 0 else 0.0)
        other = parts[1 - band][inner] - (0.5 if band == 1 else 0.0)
        energy = float(np.mean(signal**2))
        assert float(np.mean((kept - signal) ** 2)) < 0.1 * energy, (freq, band)
        assert float(np.mean(other**2)) < 0.1 * energy, (freq, band)


@settings(max_examples=50, deadline=None)
@given(
    d1=st.floats(0, 5),
    d2=st.floats(0, 5),
    d_0=st.floats(0, 8),
    d_h=st.floats(0.5, 16),
    d_c=st.floats(0.5, 16),
    w_max=st.floats(0, 1),
    resolution=st.sampled_from([64, 512]),
)
def test_weights_are_monotone_and_resolution_free(d1, d2, d_0, d_h, d_c, w_max, resolution):
    cfg = PasteConfig(restorer_sigma_512=d_0, high_band_sigma_512=d_h, correction_sigma_512=d_c, correction_max=w_max)
    (c1, h1), (c2, h2) = (
        band_weights(FaceEstimate(min(d1, d2)), resolution, cfg),
        band_weights(FaceEstimate(max(d1, d2)), resolution, cfg),
    )
    assert 0 <= c1 <= c2 <= w_max + 1e-12 and 1 >= h1 >= h2 >= 0
    assert band_weights(FaceEstimate(0.0), resolution, cfg) == (0.0, 1.0)
    assert band_weights(FaceEstimate(d1 * 512 / resolution), 512, cfg) == pytest.approx(
        band_weights(FaceEstimate(d1), resolution, cfg), abs=1e-9
    )
    if d_0 * resolution / 512 >= max(d1, d2):  # no more blur than the restorer's own: the input is kept
        assert (c2, h2) == (0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    d=st.floats(0, 5),
    k1=st.floats(0.25, 8),
    k2=st.floats(0.25, 8),
    d_0=st.floats(0, 8),
    d_k=st.floats(0, 3),
    noise=st.floats(0, 0.1),
)
def test_larger_faces_need_more_blur(d, k1, k2, d_0, d_k, noise):
    """A face k times the model's size is weighed as a face of the model's size by a restorer whose own blur is
    d_0(k) = d_0 + d_k log2 max(1, k) (closed form); so a larger face never takes more of the correction or
    sheds more of its high band, and faces up to the model's size share d_0."""
    cfg = PasteConfig(restorer_sigma_512=d_0, scale_sigma_512=d_k)
    small, large = sorted((k1, k2))
    c_small, h_small = band_weights(FaceEstimate(d, noise, 0.5, scale=small), CROP, cfg)
    c_large, h_large = band_weights(FaceEstimate(d, noise, 0.5, scale=large), CROP, cfg)
    assert c_large <= c_small and h_large >= h_small
    shifted = PasteConfig(restorer_sigma_512=d_0 + d_k * float(np.log2(max(1.0, large))))
    assert (c_large, h_large) == pytest.approx(band_weights(FaceEstimate(d, noise, 0.5), CROP, shifted), abs=1e-12)
    assert band_weights(FaceEstimate(d, noise, 0.5, scale=min(small, 1.0)), CROP, cfg) == band_weights(
        FaceEstimate(d, noise, 0.5), CROP, cfg
    )


@settings(max_examples=60, deadline=None)
@given(
    n1=st.floats(0, 0.2),
    n2=st.floats(0, 0.2),
    nu1=st.floats(0, 1),
    nu2=st.floats(0, 1),
    d=st.floats(0, 3),
    s_0=st.floats(0, 0.05),
    r_c=st.floats(0.001, 0.1),
    r_h=st.floats(0.001, 0.1),
)
def test_weights_follow_the_noise(n1, n2, nu1, nu2, d, s_0, r_c, r_h):
    """w_c grows with the crop's noise level s_y, w_h falls with the photo's s_B and with the high band's noise
    share; a face no noisier than a clean one keeps the blur rule's weights, whatever the share. (Here
    s_B = s_y; the crop's level moves only w_c, the photo's only w_h.)"""
    cfg = PasteConfig(clean_noise=s_0, correction_noise=r_c, high_band_noise=r_h)
    low, high = sorted((n1, n2))
    few, many = sorted((nu1, nu2))
    c1, h1 = band_weights(FaceEstimate(d, low, few, low), CROP, cfg)
    c2, h2 = band_weights(FaceEstimate(d, high, few, high), CROP, cfg)
    c3, h3 = band_weights(FaceEstimate(d, high, many, high), CROP, cfg)
    assert 0 <= c1 <= c2 <= 1 and c3 == c2 and 1 >= h1 >= h2 >= h3 >= 0
    if low <= s_0:
        assert (c1, h1) == band_weights(FaceEstimate(d), CROP, cfg)
    assert band_weights(FaceEstimate(d, high, many), CROP, cfg)[1] == band_weights(FaceEstimate(d), CROP, cfg)[1]
    assert band_weights(FaceEstimate(d, 0.0, many, high), CROP, cfg)[0] == band_weights(FaceEstimate(d), CROP, cfg)[0]


@settings(max_examples=30, deadline=None)
@given(sigma=st.floats(0.005, 0.2), seed=st.integers(0, 2**31 - 1))
def test_finest_band_noise_is_the_std_of_white_noise(sigma, seed):
    """On a linear ramp (no finest-band content) plus white noise of std sigma the estimate is sigma: the
    median of |N(0, sigma^2)| is 0.6745 sigma (4608 blocks: about 2 % standard error)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.2, 0.8, 96)[None, :, None] * np.ones((96, 96, 3))
    where = np.ones((96, 96), bool)
    assert finest_band_noise(ramp, where) == pytest.approx(0.0, abs=1e-12)
    assert finest_band_noise(ramp + rng.normal(0, sigma, ramp.shape), where) == pytest.approx(sigma, rel=0.08)


@pytest.mark.parametrize("side,sigma", [(128, 12 / 255), (200, 6 / 255)])
def test_noise_share_of_the_high_band(faces_hq_dir, side, sigma):
    """nu against the share computed from the known noise field n: mean(m H(n)^2) / mean(m H(B)^2), to 0.1,
    and s_B against the noise's std (the face's own finest band adds to the MAD: weak noise on a large face is
    overestimated)."""
    from faces.paste import face_to_upsampled, soft_face_mask

    photo, landmarks = _scene(faces_hq_dir, side=side)
    noise = np.random.default_rng(side).normal(0, sigma, photo.shape).astype(np.float32)
    _, affine = align_face(photo, landmarks, CROP)
    mask = soft_face_mask((CROP, CROP), face_to_upsampled(affine), photo.shape[:2])[:, :, None]
    share = float(
        np.sum(mask * split_bands(noise, affine, CROP)[1] ** 2)
        / np.sum(mask * split_bands(photo + noise, affine, CROP)[1] ** 2)
    )
    assert 0.2 < share < 1.0
    level, estimated = photo_noise(photo + noise, affine, CROP)
    assert estimated == pytest.approx(share, abs=0.1) and level == pytest.approx(sigma, rel=0.25)
    clean_level, clean_share = photo_noise(photo, affine, CROP)
    assert clean_share < 0.1 and clean_level < 0.5 * sigma  # the clean photo: mostly detail


@pytest.fixture(
    scope="module",
    params=[
        (DEMO_CONFIG, "dynfacerestore"),
        (DEMO_CONFIG, "rm0"),
        (DEMO_CONFIG, "difface"),
        ("configs/sample/dynfacerestore_demo_public.yaml", "dynfacerestore"),
    ],
    ids=["dynfacerestore", "rm0", "difface", "zero_shot"],
)
def demo_sampler(request):
    config, method = request.param
    return FaceRestoreSampler.from_config(REPO_ROOT / config, [f"sampler.method={method}"])


def _restore_with(sampler):
    def restore(crops):
        return tensor2img(sampler.restore(img2tensor(crops), [0] * len(crops)).images)

    return restore


def _face_psnr(img, ref, landmarks, side):
    """PSNR over the square of half the face's side centred on its landmarks."""
    cx, cy = np.round(landmarks.mean(0)).astype(int)
    inner = slice(cy - side // 4, cy + side // 4), slice(cx - side // 4, cx + side // 4)
    return float(10 * np.log10(1.0 / np.mean((np.clip(img[inner], 0, 1) - ref[inner]) ** 2)))


def test_noisy_face_corrected_and_clean_sharp_face_kept(faces_hq_dir, demo_sampler):
    """DifFace's demo correction costs PSNR even on noisy faces (docs/whole_photos.md): its config keeps them."""
    paste_cfg = demo_sampler.cfg.paste
    noisy_scene, landmarks = _scene(faces_hq_dir, side=96)
    noisy = single_degradation(noisy_scene, "noise", 12 / 255, np.random.default_rng(0))
    res = restore_whole_image(noisy, _KnownLandmarks(landmarks[None]), _restore_with(demo_sampler), CROP, 1, paste_cfg)
    assert res.pastes[0].estimate.scale == pytest.approx(96 / CROP)  # the face's size over the model's
    if demo_sampler.method == "difface":
        assert paste_decision(res.pastes[0].weights) == "kept"
        np.testing.assert_array_equal(res.image, noisy)
    else:
        w_c, _ = res.pastes[0].weights
        assert w_c > 0.5 and paste_decision(res.pastes[0].weights) == "restored"
        assert _face_psnr(res.image, noisy_scene, landmarks, 96) > _face_psnr(noisy, noisy_scene, landmarks, 96) + 0.5

    sharp, landmarks = _scene(faces_hq_dir, side=128)
    res = restore_whole_image(sharp, _KnownLandmarks(landmarks[None]), _restore_with(demo_sampler), CROP, 1, paste_cfg)
    assert res.pastes[0].weights == (0.0, 1.0) and paste_decision(res.pastes[0].weights) == "kept"
    np.testing.assert_array_equal(res.image, sharp)  # kept: the input exactly


@pytest.mark.parametrize("side", [64, 192])
def test_identity_restorer_keeps_a_noisy_photo(faces_hq_dir, side):
    photo, landmarks = _scene(faces_hq_dir, side=side)
    noisy = single_degradation(photo, "noise", 15 / 255, np.random.default_rng(side))
    res = restore_whole_image(noisy, _KnownLandmarks(landmarks[None]), lambda crops: [c.copy() for c in crops], CROP, 1)
    assert res.pastes[0].weights == (0.0, 1.0) and paste_decision(res.pastes[0].weights) == "kept"
    np.testing.assert_array_equal(res.image, noisy)


def _aligned_face(faces_hq_dir, side):
    hq = read_image(sorted((faces_hq_dir / "ffhq1024").glob("*.png"))[0])
    return np.clip(cv2.resize(hq, (side, side), interpolation=cv2.INTER_AREA), 0, 1)


@pytest.mark.parametrize("side", [128, 512])
def test_aligned_face_merged_at_its_own_size(faces_hq_dir, side):
    from inference.inputs import resize_to

    face = _aligned_face(faces_hq_dir, side)
    crop = resize_to(face, CROP)
    out, pasted = paste_aligned(face, crop.copy(), crop, PasteConfig())  # identity restorer: unchanged
    assert out.shape == face.shape and pasted.weights == (0.0, 1.0) and pasted.estimate.scale == side / CROP
    np.testing.assert_allclose(out, face, atol=1e-6)
    restored = np.clip(crop + 0.05, 0, 1)  # a restorer that brightens: full correction, no high band = U(x_m)
    cfg = PasteConfig(correction_sigma_512=1e-3, high_band_sigma_512=1e-3, misfit_weight=1.0)
    out, pasted = paste_aligned(face, restored, crop, cfg)
    w_c, w_h = pasted.weights
    expected = np.clip(
        face
        + w_c * cv2.resize(restored - crop, (side, side), interpolation=cv2.INTER_LINEAR)
        - (1 - w_h) * (face - cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)),
        0,
        1,
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="need a square face"):
        paste_aligned(face[:, :-1], crop, crop, PasteConfig())


def test_cli_returns_an_aligned_128_px_face_at_128_px(faces_hq_dir, tmp_path):
    import json

    from inference.runner import main

    src = tmp_path / "in"
    write_image(src / "big.png", _aligned_face(faces_hq_dir, 128))
    write_image(src / "small.png", _aligned_face(faces_hq_dir, 48))
    assert (
        main(["-i", str(src), "-o", str(tmp_path / "out"), "--aligned", "--config", DEMO_CONFIG, "--method", "rm0"])
        == 0
    )
    assert read_image(tmp_path / "out" / "restored" / "big.png").shape == (128, 128, 3)
    assert read_image(tmp_path / "out" / "restored" / "small.png").shape == (CROP, CROP, 3)
    record = json.loads(record_path(tmp_path / "out", "big").read_text())
    assert record["decision"] in ("kept", "partly", "restored") and len(record["paste_weights"]) == 2


@pytest.mark.parametrize("sigma", [0.0, 0.6, 1.3])
def test_degradation_is_the_blur_between_restoration_and_input(faces_hq_dir, sigma):
    photo, landmarks = _scene(faces_hq_dir, side=128)
    sharp, _ = align_face(photo, landmarks, CROP)
    blurred = gaussian_blur(torch.from_numpy(sharp).permute(2, 0, 1)[None].double(), sigma)[0].permute(1, 2, 0)
    d = degradation_estimates([sharp], [blurred.numpy()])[0]
    assert abs(d - sigma) <= FINE_STEP + 1e-9


def _reference_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an HxWxC float64 image, radius ceil(4 sigma), mirror boundary without repeating the
    edge: written from the definition, independent of data.blur."""
    r = kernel_radius(sigma)
    if r == 0:
        return img.copy()
    taps = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    out = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="reflect")
    out = sum(t * out[i : i + img.shape[0]] for i, t in enumerate(taps))
    out = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="reflect")
    return sum(t * out[:, i : i + img.shape[1]] for i, t in enumerate(taps))


@settings(max_examples=40, deadline=None)
@given(sigma=st.one_of(st.just(0.0), st.floats(0.05, 2.5)), w_m=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))
def test_misfit_weight_scales_only_what_the_blur_does_not_explain(sigma, w_m, seed):
    rng = np.random.default_rng(seed)
    x_hat = rng.random((24, 24, 3))
    misfit = 0.05 * rng.standard_normal(x_hat.shape)
    crop = _reference_blur(x_hat, sigma) + misfit
    weighted = misfit_weighted(x_hat, crop, sigma, w_m)
    np.testing.assert_allclose(weighted, x_hat + (1.0 - w_m) * misfit, atol=2e-5)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("mode", "soft", "allowed"),
        ("high_band_sigma_512", 0.0, "> 0"),
        ("correction_sigma_512", -1.0, "> 0"),
        ("correction_max", 1.5, r"\[0, 1\]"),
        ("misfit_weight", -0.1, r"\[0, 1\]"),
        ("restorer_sigma_512", -0.5, ">= 0"),
        ("scale_sigma_512", -0.1, ">= 0"),
        ("clean_noise", -0.01, ">= 0"),
        ("correction_noise", 0.0, "> 0"),
        ("high_band_noise", -1.0, "> 0"),
    ],
)
def test_bad_paste_config(key, value, match):
    with pytest.raises(ValueError, match=match):
        check_paste_config(PasteConfig(**{key: value}))
    with pytest.raises(ValueError, match="unknown"):
        check_paste_config(PasteConfig(methods={"difface": {"restorer_sigma": 1.0}}))


def test_paste_parameters_per_method():
    """paste.methods.<method> replaces the section's entries for that sampler.method only."""
    overrides = ["paste.methods.rm0.restorer_sigma_512=7.5"]
    rm0 = load_sample_config(REPO_ROOT / DEMO_CONFIG, overrides + ["sampler.method=rm0"]).paste
    dyn = load_sample_config(REPO_ROOT / DEMO_CONFIG, overrides + ["sampler.method=dynfacerestore"]).paste
    assert rm0.restorer_sigma_512 == 7.5 and dyn.restorer_sigma_512 == PasteConfig().restorer_sigma_512
    assert rm0.high_band_sigma_512 == dyn.high_band_sigma_512
    with pytest.raises(ConfigError, match="not a method"):
        load_sample_config(REPO_ROOT / DEMO_CONFIG, ["paste.methods.gfpgan.restorer_sigma_512=1"])


@settings(max_examples=60, deadline=None)
@given(
    d=st.floats(0, 3),
    noise=st.floats(0, 0.1),
    share=st.floats(0, 1),
    d_0=st.floats(0, 8),
    resolution=st.sampled_from([64, 512]),
)
def test_kept_faces_are_pasted_with_zero_one(d, noise, share, d_0, resolution):
    """paste_weights is band_weights except where the decision is ``kept``: there (0, 1), the same decision."""
    cfg = PasteConfig(restorer_sigma_512=d_0)
    estimate = FaceEstimate(d, noise, share)
    weights, pasted = band_weights(estimate, resolution, cfg), paste_weights(estimate, resolution, cfg)
    assert paste_decision(pasted) == paste_decision(weights)
    assert pasted == ((0.0, 1.0) if paste_decision(weights) == "kept" else weights)
