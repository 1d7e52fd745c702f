"""Offline face detection on real faces pasted into real photos at known poses (faces.detection).

The composites (data.face_composites) put FFHQ-aligned faces (../shared/data/faces_hq/ffhq1024 and
celebref512), whose true 5 points are the FFHQ template, into scikit-image photos at known scales,
rotations up to 30 degrees and offsets, two or three faces per image. Tolerances are set from
docs/face_detection.md (benchmarks/bench_face_detection.py, 12 composites / 30 faces: the default
detector's mean landmark error 9.9 template px, worst 17.6, crop PSNR 18.7 dB; the error floor of the
faces' own deviation from the mean template is ~10 px), with margin for other faces.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.face_composites import score_detections, standard_composites
from faces.detection import (
    OFFLINE_DEFAULT,
    RETINAFACE_WEIGHTS_NAME,
    RETINAFACE_WEIGHTS_URL,
    RetinaFaceDetector,
    box_iou,
    build_detector,
    five_from_68,
    merge_duplicates,
    resolve_detector_name,
)

MEAN_ERROR_MAX = 13.0  # 512-template pixels
WORST_ERROR_MAX = 25.0
MEAN_CROP_PSNR_MIN = 17.5  # dB, 128 px crops
CROP = 128


@pytest.fixture(scope="module")
def composites(faces_hq_dir):
    return standard_composites(faces_hq_dir / "ffhq1024", faces_hq_dir / "celebref512", count=4, seed=1)


@pytest.fixture(scope="module")
def default_detector():
    return build_detector()


def _scores(detector, composites):
    return [score_detections(c, detector.detect(c.image)[1], CROP) for c in composites]


def test_composites_hold_their_truth(composites):
    """The generator's true landmarks align each face back onto its source (resampling error only)."""
    assert [len(c.faces) for c in composites] == [2, 3, 2, 3]
    assert max(abs(f.angle_deg) for c in composites for f in c.faces) > 15
    for c in composites:
        s = score_detections(c, np.stack([f.landmarks for f in c.faces]), CROP)
        assert s.found == len(c.faces) and s.false_alarms == 0 and max(s.landmark_errors) < 1e-9
        assert min(s.crop_psnrs) > 24.0


def test_default_detector_finds_every_face_and_aligns_it(composites, default_detector):
    assert default_detector.name == OFFLINE_DEFAULT == "mtcnn_dlib"
    scores = _scores(default_detector, composites)
    errors = np.array([e for s in scores for e in s.landmark_errors])
    psnrs = np.array([p for s in scores for p in s.crop_psnrs])
    assert sum(s.found for s in scores) == len(errors) == 10 and sum(s.false_alarms for s in scores) == 0
    assert errors.mean() < MEAN_ERROR_MAX and errors.max() < WORST_ERROR_MAX, errors
    assert psnrs.mean() > MEAN_CROP_PSNR_MIN, psnrs


def test_the_alignment_check_can_fail(composites, default_detector):
    """Control: the detector's landmarks moved by 8 px (about 16 template px) break the tolerances."""
    c = composites[0]
    _, lms = default_detector.detect(c.image)
    s = score_detections(c, lms + np.array([8.0, 8.0]), CROP)
    assert np.mean(s.landmark_errors) > MEAN_ERROR_MAX and np.mean(s.crop_psnrs) < MEAN_CROP_PSNR_MIN


@pytest.mark.parametrize("name", ["mtcnn", "dlib"])
def test_other_offline_detectors_run_with_our_torch(composites, name):
    """facenet-pytorch (installed without its torch<2.3 pin) and dlib-bin run and find the faces."""
    det = build_detector(name)
    boxes, lms = det.detect(composites[1].image)
    assert boxes.shape == (3, 5) and lms.shape == (3, 5, 2) and np.all(np.diff(boxes[:, 4]) <= 0)
    s = score_detections(composites[1], lms, CROP)
    assert s.found == 3 and np.mean(s.landmark_errors) < MEAN_ERROR_MAX + 3


def test_min_face_size_drops_small_faces(composites):
    sides = [f.scale * f.source_size for f in composites[0].faces]
    det = build_detector(min_face_size=int(max(sides) * 1.6))
    assert det.detect(composites[0].image)[0].shape == (0, 5)


@pytest.mark.parametrize("name", ["mtcnn", "mtcnn_dlib", "dlib"])
def test_image_smaller_than_the_smallest_face_has_no_face(name):
    """MTCNN has no pyramid scale for an image below its minimum face size (facenet-pytorch then fails
    inside torch.cat): every detector answers "no face" instead."""
    det = build_detector(name, min_face_size=20)
    boxes, lms = det.detect(np.full((16, 24, 3), 0.5, np.float32))
    assert boxes.shape == (0, 5) and lms.shape == (0, 5, 2)


def test_no_face_in_a_photo_without_people(default_detector):
    from data.face_composites import background

    boxes, lms = default_detector.detect(background("coffee", (400, 600)))
    assert boxes.shape == (0, 5) and lms.shape == (0, 5, 2)


def test_five_from_68_takes_eye_centres_nose_tip_and_mouth_corners():
    pts = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = five_from_68(pts)
    np.testing.assert_allclose(five[0], pts[36:42].mean(0))
    np.testing.assert_allclose(five[1], pts[42:48].mean(0))
    np.testing.assert_array_equal(five[2:], pts[[30, 48, 54]])


def test_detector_choice(tmp_path):
    assert resolve_detector_name(None, None) == resolve_detector_name("auto", tmp_path / "none.pth") == OFFLINE_DEFAULT
    weights = tmp_path / RETINAFACE_WEIGHTS_NAME
    weights.write_bytes(b"x")
    assert resolve_detector_name("auto", weights) == "retinaface"
    assert resolve_detector_name("mtcnn", weights) == "mtcnn"
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        resolve_detector_name("yolo", None)
    with pytest.raises(ValueError, match="min_face_size"):
        build_detector("mtcnn", min_face_size=0)


_box = st.tuples(st.floats(0, 90), st.floats(0, 90), st.floats(1, 60), st.floats(1, 60), st.floats(0, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(_box, min_size=1, max_size=8))
def test_merge_duplicates_keeps_the_best_of_overlapping_boxes(raw):
    boxes = np.array([[x, y, x + w, y + h, s] for x, y, w, h, s in raw])
    lms = np.arange(len(boxes) * 10, dtype=np.float64).reshape(-1, 5, 2)
    kept, kept_lms = merge_duplicates(boxes, lms)
    assert kept[0, 4] == boxes[:, 4].max()
    assert all(box_iou(a, b) <= 0.3 for i, a in enumerate(kept) for b in kept[i + 1 :])
    for box in boxes:  # every dropped box overlaps a kept one that scores at least as high
        assert any(np.array_equal(box, k) or (box_iou(box, k) > 0.3 and k[4] >= box[4]) for k in kept)
    for box, lm in zip(kept, kept_lms):  # landmarks travel with their box
        i = next(i for i, b in enumerate(boxes) if np.array_equal(b, box))
        np.testing.assert_array_equal(lm, lms[i])


# ------------------------------------------------------------------------------------------ RetinaFace
def test_retinaface_requires_weights(tmp_path):
    for path in (None, tmp_path / RETINAFACE_WEIGHTS_NAME):
        with pytest.raises(FileNotFoundError) as err:
            RetinaFaceDetector(path)
        assert RETINAFACE_WEIGHTS_NAME in str(err.value) and RETINAFACE_WEIGHTS_URL in str(err.value)
        assert "weights/facexlib/" in str(err.value) and "--detector auto" in str(err.value)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a RetinaFace-ResNet50 state dict"):
        RetinaFaceDetector(bad)


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")
def test_retinaface_loads_module_prefixed_state_dict(tmp_path):
    """A DataParallel-style file (keys 'module.*', as released) loads; detect returns consistent arrays."""
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    net = RetinaFace(network_name="resnet50", half=False, device="cpu")
    path = tmp_path / RETINAFACE_WEIGHTS_NAME
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    det = RetinaFaceDetector(path, conf_threshold=0.0, min_face_size=1)
    assert all(torch.equal(a, b) for a, b in zip(det.model.state_dict().values(), net.state_dict().values()))
    boxes, lms = det.detect(np.random.default_rng(0).uniform(0, 1, (64, 64, 3)).astype(np.float32))
    assert boxes.shape[1] == 5 and lms.shape == (len(boxes), 5, 2) and len(boxes) > 0
    assert np.all(np.diff(boxes[:, 4]) <= 0)
