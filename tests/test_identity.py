"""Identity distance (faces.identity, dlib's face embedding) on real faces of known identity.

../shared/data/faces_hq/celebref512 holds 9 identities; with 4 faces each (the first 4 sorted), same-person
distances must be below different-person distances for the large majority of (same, different) pairs, and
dlib's 0.6 threshold must separate most pairs, both at 512 px and at the 64 px demo resolution.
"""

from __future__ import annotations

import csv
import io
import itertools

import cv2
import numpy as np
import pytest

from faces.identity import IDENTITY_CONVENTIONS, SAME_PERSON_THRESHOLD, FaceIdentity
from inference.report import metrics_csv, summarize
from utils.image_io import read_image
from utils.metrics import compute_metrics

FACES_PER_ID = 4


@pytest.fixture(scope="module")
def identity():
    return FaceIdentity()


@pytest.fixture(scope="module")
def faces_by_id(faces_hq_dir):
    root = faces_hq_dir / "celebref512"
    people = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(people) == 9
    return {p.name: [read_image(f) for f in sorted(p.glob("*.png"))[:FACES_PER_ID]] for p in people}


def _pair_distances(identity, faces_by_id, size):
    emb = []
    for person, faces in faces_by_id.items():
        for img in faces:
            if size != img.shape[0]:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            emb.append((person, identity.embed(img)))
    assert all(e is not None for _, e in emb), "every CelebRef-HQ face must give an embedding"
    same, diff = [], []
    for (pa, ea), (pb, eb) in itertools.combinations(emb, 2):
        (same if pa == pb else diff).append(float(np.linalg.norm(ea - eb)))
    return np.array(same), np.array(diff)


@pytest.mark.parametrize("size, min_order_rate, min_threshold_rate", [(512, 0.98, 0.95), (64, 0.97, 0.93)])
def test_same_person_closer_than_different_people(identity, faces_by_id, size, min_order_rate, min_threshold_rate):
    """Measured (docs/face_detection.md): every (same, different) pair ordered and split by 0.6, both sizes."""
    same, diff = _pair_distances(identity, faces_by_id, size)
    assert len(same) == 9 * 6 and len(diff) == 36 * 35 // 2 - 54
    ordered = (same[:, None] < diff[None, :]).mean()
    assert ordered >= min_order_rate, ordered
    assert (same < SAME_PERSON_THRESHOLD).mean() >= min_threshold_rate
    assert (diff >= SAME_PERSON_THRESHOLD).mean() >= min_threshold_rate


def test_distance_uses_the_reference_box_and_is_zero_for_the_same_image(identity, faces_by_id):
    a, b = faces_by_id["00005"][:2]
    assert identity.distance(a, a) == pytest.approx(0.0, abs=1e-6)
    m = identity.metrics(b, a)
    assert set(m) == {"id_dist", "id_same"} and m["id_same"] == float(m["id_dist"] < SAME_PERSON_THRESHOLD)
    # a restored image without a recognisable face is still measured in the reference's face box
    gray = np.full_like(a, 0.5)
    assert identity.distance(gray, a) > SAME_PERSON_THRESHOLD
    with pytest.raises(ValueError, match="sizes differ"):
        identity.distance(a[:100], a)


def test_no_face_in_the_reference_gives_an_empty_cell(identity, faces_by_id):
    from data.face_composites import background

    face = list(faces_by_id.values())[0][0]
    no_face = background("coffee", face.shape[:2])
    assert identity.metrics(face, no_face) == {}
    with_face = compute_metrics(face, face, identity=identity)
    without = compute_metrics(face, no_face, identity=identity)
    assert "id_dist" in with_face and "id_dist" not in without and "psnr" in without
    records = [{"key": "a", "method": "m", "metrics": with_face}, {"key": "b", "method": "m", "metrics": without}]
    rows = list(csv.reader(io.StringIO(metrics_csv(records))))
    col = rows[0].index(IDENTITY_CONVENTIONS["id_dist"])
    assert rows[1][col] != "" and rows[2][col] == ""
    mean = summarize(records)["m"]["mean"]
    assert mean["id_dist"] == pytest.approx(with_face["id_dist"]) and mean["id_same"] == 1.0
