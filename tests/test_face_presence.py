"""Face presence rates (faces.presence) on real faces and on noise, and the --detect table of
scripts/sample_prior.py."""

from __future__ import annotations

import numpy as np
import pytest

from data.datasets import load_face
from faces.detection import DlibDetector
from faces.identity import MIN_SIDE, upscale_to
from faces.presence import DETECTOR_NAMES, FacePresence
from script_modules import load_script
from utils.image_io import read_image

N = 8


@pytest.fixture(scope="module")
def presence():
    return FacePresence()


def test_real_faces_are_found_and_noise_is_not(presence, celeba_val_faces):
    faces = [load_face(p, 64) for p in celeba_val_faces[:N]]
    rates = presence.rates(faces)
    # the first 64 validation faces at 64 px: 1.00 on each detector (sample_prior.py --detect, docs/evaluation.md)
    assert all(rates[name] >= (N - 1) / N for name in DETECTOR_NAMES), rates
    assert rates["all"] <= min(rates[name] for name in DETECTOR_NAMES)
    rng = np.random.default_rng(0)
    noise = [np.clip(rng.normal(0.5, 0.25, (64, 64, 3)), 0.0, 1.0) for _ in range(N)]
    assert presence.rates(noise) == {name: 0.0 for name in (*DETECTOR_NAMES, "all")}
    # a face smaller than min_face_size (after the upscaling to 256 px) is not counted
    small = FacePresence(min_face_size=300)
    assert small.rates(faces[:2])["all"] == 0.0


def test_mmod_vote_matches_the_full_dlib_detector(presence, celeba_val_faces):
    """The MMOD vote reads boxes only; faces.detection.DlibDetector (boxes + 68-point landmarks, its own
    size filter) is the reference it must agree with, on faces and on noise."""
    reference = DlibDetector(min_face_size=presence.min_face_size)
    rng = np.random.default_rng(1)
    images = [load_face(p, 64) for p in celeba_val_faces[:3]] + [rng.uniform(0.0, 1.0, (64, 64, 3))]
    for img in images:
        big = upscale_to(img, MIN_SIDE).astype(np.float32) / 255.0
        assert presence.found(img)["mmod"] == (len(reference.detect(big)[0]) > 0)


def test_empty_image_set_is_a_clear_error(presence):
    with pytest.raises(ValueError, match="at least one image"):
        presence.rates([])


def test_sample_prior_detect_table(tmp_path, capsys, faces_hq_dir):
    sample_prior = load_script("sample_prior")
    code = sample_prior.main(
        [
            "--num",
            "2",
            "--respacing",
            "ddim4",
            "--out",
            str(tmp_path / "grid.png"),
            "--detect",
            "--real",
            str(faces_hq_dir / "celeba128_val.txt"),
            "--show",
            "1",
        ]
    )
    assert code == 0
    assert read_image(tmp_path / "grid.png").shape[1] == 128  # one tile per checkpoint: --show 1
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| images | n | hog | mtcnn | mmod | all three |")
    real, noise, samples = rows[1:]
    assert real.startswith("| real faces (celeba128_val.txt, 64 px) | 2 | 1.00 | 1.00 | 1.00 | 1.00 |")
    assert noise.startswith("| the noise x_T | 2 | 0.00 | 0.00 | 0.00 | 0.00 |")
    assert samples.startswith("| weights/demo/unet_demo64.pth | 2 |")


def test_sample_prior_detect_missing_real_faces_exits_2(tmp_path, capsys):
    sample_prior = load_script("sample_prior")
    with pytest.raises(SystemExit) as err:
        sample_prior.main(["--detect", "--real", str(tmp_path / "absent.txt"), "--out", str(tmp_path / "g.png")])
    assert err.value.code == 2
    assert "--real: file list or image folder not found" in capsys.readouterr().err
