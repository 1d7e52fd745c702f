"""faces.align and the classic paste-back of faces.paste on a real face pasted into a real background at a
known similarity transform (the resolution-aware paste-back: tests/test_paste.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faces.align import align_face, estimate_similarity, face_template
from faces.paste import (
    FacePaste,
    PasteConfig,
    bicubic_upsample,
    face_to_upsampled,
    paste_face,
    restore_whole_image,
    soft_face_mask,
)
from utils.image_io import read_image

FACE = 256


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def _similarity(angle_deg, scale, centre, face_size=FACE):
    """2x3 map face -> image: rotate/scale about the face centre, which lands on ``centre``."""
    a = np.deg2rad(angle_deg)
    lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = np.asarray(centre, np.float64) - lin @ np.full(2, (face_size - 1) / 2.0)
    return np.hstack([lin, t[:, None]])


@pytest.fixture(scope="module")
def scene(faces_hq_dir, real_lq_dir):
    """(face 256, composite 384x448, face->image transform T, landmarks in the composite)."""
    face = cv2.resize(
        read_image(sorted((faces_hq_dir / "celebref512").glob("*/*.png"))[0]),
        (FACE, FACE),
        interpolation=cv2.INTER_AREA,
    )
    bg = read_image(sorted((real_lq_dir / "wider_like").glob("*.png"))[3])
    bg = cv2.GaussianBlur(cv2.resize(bg, (448, 384), interpolation=cv2.INTER_AREA), (0, 0), 3)
    t = _similarity(20.0, 1.2, (200.0, 180.0))
    h, w = bg.shape[:2]
    warped = cv2.warpAffine(face, t, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(np.ones((FACE, FACE), np.float32), t, (w, h), flags=cv2.INTER_LINEAR)[:, :, None]
    composite = alpha * warped + (1 - alpha) * bg
    landmarks = face_template(FACE) @ t[:, :2].T + t[:, 2]
    return face, composite, t, landmarks


def _face_region(t, out_hw, upscale, lo, hi):
    """Boolean mask of the image pixels whose face coordinates (under t, then upscale) lie in [lo, hi]^2."""
    region = np.zeros((FACE, FACE), np.float32)
    region[lo:hi, lo:hi] = 1
    up = np.array([[upscale, 0, (upscale - 1) / 2], [0, upscale, (upscale - 1) / 2], [0, 0, 1.0]])
    m = (up @ np.vstack([t, [0, 0, 1]]))[:2]
    return cv2.warpAffine(region, m, out_hw[::-1], flags=cv2.INTER_NEAREST) > 0.5


def test_template_scales():
    assert face_template(512)[0] == pytest.approx([192.98138, 239.94708])
    assert np.allclose(face_template(128), face_template(512) / 4)


@settings(max_examples=20, deadline=None)
@given(
    angle=st.floats(-180, 180),
    scale=st.floats(0.05, 20),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
    seed=st.integers(0, 2**31),
)
def test_similarity_exact_and_least_squares(angle, scale, tx, ty, seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 512, (5, 2))
    a = np.deg2rad(angle)
    true = np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])
    dst = src @ true[:, :2].T + true[:, 2]
    assert np.allclose(estimate_similarity(src, dst), true, atol=1e-8 * max(1.0, scale), rtol=1e-9)
    # with noise: the optimum of the linear least-squares problem in (a, b, tx, ty), dst = [[a,-b],[b,a]] src + t
    noisy = dst + rng.normal(0, 5, dst.shape)
    design = np.zeros((10, 4))
    design[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    design[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    (pa, pb, px, py), *_ = np.linalg.lstsq(design, noisy.reshape(-1), rcond=None)
    assert np.allclose(estimate_similarity(src, noisy), [[pa, -pb, px], [pb, pa, py]], atol=1e-7 * max(1.0, scale))


def test_similarity_rejects_bad_points():
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="point arrays"):
        estimate_similarity(np.ones((5, 2)), np.zeros((4, 2)))


def test_align_recovers_face(scene):
    face, composite, t, landmarks = scene
    crop, affine = align_face(composite, landmarks, FACE)
    assert np.allclose(np.vstack([affine, [0, 0, 1]]) @ np.vstack([t, [0, 0, 1]]), np.eye(3), atol=1e-9)
    inner = slice(32, FACE - 32)
    assert _psnr(crop[inner, inner], face[inner, inner]) > 38.0
    assert np.abs(crop[inner, inner] - face[inner, inner]).mean() < 0.01


@pytest.mark.parametrize("upscale", [1, 2])
def test_paste_back_identity_restorer(scene, upscale):
    _, composite, t, landmarks = scene
    crop, affine = align_face(composite, landmarks, FACE)
    bg_up = bicubic_upsample(composite, upscale)
    out = paste_face(bg_up, FacePaste(crop, crop, affine), upscale)
    mask = soft_face_mask((FACE, FACE), face_to_upsampled(affine, upscale), bg_up.shape[:2])
    centre = _face_region(t, bg_up.shape[:2], upscale, 72, FACE - 72)
    assert centre.sum() > 1000 * upscale**2 and np.all(mask[centre] == pytest.approx(1.0))
    assert _psnr(out[centre], bg_up[centre]) > 40.0
    # a half-pixel misplacement must be visible at this tolerance
    shifted = affine.copy()
    shifted[:, 2] += 0.5
    assert _psnr(paste_face(bg_up, FacePaste(crop, crop, shifted), upscale)[centre], bg_up[centre]) < 38.0
    footprint = _face_region(t, bg_up.shape[:2], upscale, 0, FACE).astype(np.uint8)
    outside = cv2.dilate(footprint, np.ones((5, 5), np.uint8)) == 0
    assert np.array_equal(out[outside], bg_up[outside])
    assert 0.0 <= mask.min() and mask.max() <= 1.0 + 1e-6


class _KnownLandmarks:
    def __init__(self, landmarks):
        self.landmarks = landmarks

    def detect(self, img):
        return np.zeros((1, 5)), self.landmarks[None]


def test_restore_whole_image(scene):
    _, composite, t, landmarks = scene
    calls = []

    def identity(faces):
        calls.append(len(faces))
        return [f.copy() for f in faces]

    res = restore_whole_image(composite, _KnownLandmarks(landmarks), identity, face_size=FACE, upscale=2)
    bg_up = bicubic_upsample(composite, 2)
    assert res.image.shape == (768, 896, 3) and calls == [1] and len(res.faces.affines) == 1
    centre = _face_region(t, bg_up.shape[:2], 2, 72, FACE - 72)
    assert _psnr(res.image[centre], bg_up[centre]) > 40.0
    gray = restore_whole_image(
        composite,
        _KnownLandmarks(landmarks),
        lambda f: [np.full_like(x, 0.5) for x in f],
        face_size=FACE,
        upscale=2,
        cfg=PasteConfig(mode="classic"),
    )
    assert np.allclose(gray.image[centre], 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="equal squares"):
        restore_whole_image(composite, _KnownLandmarks(landmarks), lambda f: [x[:10] for x in f], FACE, 1)
