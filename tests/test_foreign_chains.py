"""The evaluation's foreign degradation chains (data.foreign_chains) on real faces: deterministic per
(seed, index), parameters in their stated ranges, and each step doing what it says."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.foreign_chains import CHAINS, make_chain_testset, motion_kernel
from utils.image_io import read_image
from utils.metrics import psnr


@given(length=st.floats(3.0, 7.0), angle=st.floats(0.0, 180.0))
@settings(max_examples=40, deadline=None)
def test_motion_kernel_is_normalised_odd_and_nearly_centred(length, angle):
    """Over the chain's lengths; the anti-aliased line is not exactly centred (measured: up to 0.71 px
    off, so the "pillow" chain also shifts a face by a fraction of a pixel)."""
    k = motion_kernel(length, angle)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0, abs=1e-5) and k.min() >= 0
    ys, xs = np.mgrid[: k.shape[0], : k.shape[1]]
    c = (k.shape[0] - 1) / 2
    assert np.hypot((k * xs).sum() - c, (k * ys).sum() - c) < 0.75
    assert (k > 0).sum() >= 3  # a line, not a point


def test_chain_testsets_on_real_faces(faces_hq_dir, tmp_path):
    source = faces_hq_dir / "celeba128_val.txt"
    for chain in sorted(CHAINS):
        a = make_chain_testset(source, tmp_path / chain / "a", chain, resolution=64, seed=3, limit=4)
        b = make_chain_testset(source, tmp_path / chain / "b", chain, resolution=64, seed=3, limit=4)
        assert a == {**b, "source": a["source"]} and len(a["images"]) == 4
        assert json.loads((tmp_path / chain / "a" / "chain.json").read_text())["chain"] == chain
        for img in a["images"]:
            hq = read_image(tmp_path / chain / "a" / "hq" / f"{img['name']}.png")
            lq = read_image(tmp_path / chain / "a" / "lq" / f"{img['name']}.png")
            assert hq.shape == lq.shape == (64, 64, 3)
            np.testing.assert_array_equal(lq, read_image(tmp_path / chain / "b" / "lq" / f"{img['name']}.png"))
            assert 15.0 < psnr(lq, hq) < 35.0  # degraded, still the face
            if chain == "opencv":
                assert 1.0 <= img["blur_sigma"] <= 3.0 and img["down_to"] == 16 and img["jpeg"] == 60
            else:
                assert 3.0 <= img["motion_length"] <= 7.0 and 35 <= img["jpeg"] <= 55
        other = make_chain_testset(source, tmp_path / chain / "c", chain, resolution=64, seed=4, limit=4)
        assert other["images"] != a["images"]


def test_opencv_chain_low_passes_like_its_blur(faces_hq_dir):
    """Without the chain's downsampling limit the loss of high frequencies grows with the drawn sigma."""
    hq = cv2.resize(
        read_image(sorted((faces_hq_dir / "ffhq1024").glob("*.png"))[0]), (64, 64), interpolation=cv2.INTER_AREA
    ).astype(np.float32)
    lq, params = CHAINS["opencv"](hq, np.random.default_rng(0))
    lap = lambda x: float(np.abs(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean())  # noqa: E731
    assert lap(lq) < 0.6 * lap(hq), params


def test_unknown_chain_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown chain 'gimp'"):
        make_chain_testset("none.txt", tmp_path, "gimp", resolution=64)
