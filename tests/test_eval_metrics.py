"""The evaluation's networks (FID Inception, ArcFace IR-SE50, AWing) built from basicsr / facexlib with random
weights saved at their real layouts, run end to end on real faces; dlib's landmark distance; bad weights files."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from eval_weight_layouts import save_random_eval_weights

from utils.arcface import ArcFaceIdentity
from utils.eval_weights import EVAL_WEIGHTS, WeightsError, find_weights
from utils.feature_stats import feature_stats, frechet_distance
from utils.image_io import read_image
from utils.inception import FID_FEATURES, InceptionFeatures
from utils.landmarks import AWING_POINTS, AWingLandmarks, DlibLandmarks, heatmap_points


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return save_random_eval_weights(tmp_path_factory.mktemp("metrics_weights"))


@pytest.fixture(scope="module")
def faces(celeba_val_faces):
    return [read_image(p) for p in celeba_val_faces[:4]]


@pytest.fixture(scope="module")
def faces512(faces_hq_dir):
    paths = sorted((faces_hq_dir / "celebref512").rglob("*.png"))
    return [read_image(p) for p in paths[::40][:3]]


def blur(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def shift(img: np.ndarray, dx: float) -> np.ndarray:
    """``img`` moved right by ``dx`` pixels (bilinear, border replicated)."""
    return cv2.warpAffine(
        img,
        np.float32([[1, 0, dx], [0, 1, 0]]),
        img.shape[1::-1],
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def test_fid_inception_runs_on_real_faces(weights_dir, faces):
    inception = InceptionFeatures(find_weights("fid_inception", weights_dir))
    features = inception(faces)
    assert features.shape == (len(faces), FID_FEATURES) and np.isfinite(features).all()
    assert np.array_equal(inception(faces[:1])[0], features[0])  # deterministic, one image at a time
    same = frechet_distance(*feature_stats(features), *feature_stats(features))
    blurred = frechet_distance(*feature_stats(inception(blur(f) for f in faces)), *feature_stats(features))
    assert blurred > 0 and abs(same) <= 1e-3 * blurred  # random weights: tiny features, so relative


def test_arcface_runs_on_real_faces(weights_dir, faces512):
    arcface = ArcFaceIdentity(find_weights("arcface", weights_dir))
    e = arcface.embed(faces512[0])
    assert e.shape == (512,) and np.linalg.norm(e) == pytest.approx(1.0, rel=1e-5)
    same = arcface.metrics(faces512[0], faces512[0])
    assert same["arcface_cos"] == pytest.approx(0.0, abs=1e-6) and same["arcface_deg"] < 0.2
    other = arcface.metrics(faces512[1], faces512[0])
    cos = float(e @ arcface.embed(faces512[1]))
    assert other["arcface_cos"] == pytest.approx(1 - cos, rel=1e-9)
    assert other["arcface_deg"] == pytest.approx(math.degrees(math.acos(cos)), rel=1e-9) and other["arcface_deg"] > 0


def test_awing_runs_on_real_faces(weights_dir, faces512):
    awing = AWingLandmarks(find_weights("awing", weights_dir))
    points = awing.points(faces512[0])
    h, w = faces512[0].shape[:2]
    assert points.shape == (AWING_POINTS, 2)
    assert (points >= 0).all() and (points[:, 0] <= w).all() and (points[:, 1] <= h).all()
    assert awing.metrics(faces512[0], faces512[0]) == {"lmd_awing": 0.0}
    assert awing.metrics(shift(faces512[0], 6), faces512[0])["lmd_awing"] >= 0


def test_heatmap_decoding_matches_facexlib(monkeypatch):
    """facexlib's calculate_points (its np.float alias restored for numpy 2) on peaks away from the border."""
    from facexlib.alignment import awing_arch

    monkeypatch.setattr(np, "float", float, raising=False)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    centres = rng.uniform(3, 60, size=(AWING_POINTS, 2))
    heatmaps = np.exp(-((xx[None] - centres[:, :1, None]) ** 2 + (yy[None] - centres[:, 1:, None]) ** 2) / 4.0)
    ours = heatmap_points(heatmaps)
    assert np.allclose(ours, awing_arch.calculate_points(heatmaps[None])[0])
    assert np.abs(ours - centres - 0.5).max() <= 0.75  # within a quarter pixel of the continuous peak (+0.5)


def test_dlib_lmd_is_zero_for_identical_faces_and_grows_with_a_shift(faces512):
    lmd = DlibLandmarks()
    for face in faces512:
        assert lmd.metrics(face, face) == {"lmd_dlib": 0.0}
        values = [lmd.metrics(shift(face, dx), face)["lmd_dlib"] for dx in (2, 4, 8, 16)]
        assert all(a < b for a, b in zip(values, values[1:])), values
        assert 0.5 * 16 < values[-1] < 1.5 * 16  # the landmarks follow the face: about the shift itself


def test_dlib_lmd_skips_a_reference_without_a_face():
    gray = np.full((128, 128, 3), 0.5, np.float32)
    assert DlibLandmarks().metrics(gray, gray) == {}


@pytest.mark.parametrize("name", ["fid_inception", "arcface", "awing"])
def test_a_truncated_weights_file_is_rejected_in_one_line(weights_dir, tmp_path, name):
    source = EVAL_WEIGHTS[name].target(weights_dir)
    EVAL_WEIGHTS[name].target(tmp_path).write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(WeightsError) as err:
        find_weights(name, tmp_path)
    assert len(str(err.value).splitlines()) == 1 and EVAL_WEIGHTS[name].file in str(err.value)


def test_another_network_in_the_file_is_rejected_in_one_line(weights_dir, tmp_path):
    EVAL_WEIGHTS["arcface"].target(tmp_path).write_bytes(EVAL_WEIGHTS["awing"].target(weights_dir).read_bytes())
    with pytest.raises(WeightsError) as err:
        find_weights("arcface", tmp_path)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "not the arcface file" in message


def test_a_missing_file_names_the_download_command(tmp_path):
    with pytest.raises(WeightsError, match="python scripts/download_weights.py --eval"):
        find_weights("awing", tmp_path)
    with pytest.raises(WeightsError, match="drive.google.com"):  # no direct link: where to get it by hand
        find_weights("ffhq512_stats", tmp_path)
