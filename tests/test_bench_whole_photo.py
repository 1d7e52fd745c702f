"""benchmarks/bench_whole_photo.py: which faces tune and which evaluate, and the grid interpolation the fit reads.

- the tuning faces never include an evaluation face (the paste parameters are chosen on other faces);
- face names carry the identity folder, so CelebRef-HQ photos with the same file name stay apart;
- ``_interp`` is bilinear: exact on any function a + b w_c + c w_h + d w_c w_h (hypothesis).
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_whole_photo import EVAL_FACES, GRID, _interp, face_name, face_sources


def test_tuning_faces_are_ffhq_then_celebref_outside_the_evaluation(faces_hq_dir):
    ffhq = sorted((faces_hq_dir / "ffhq1024").glob("*.png"))
    tune, evaluation = face_sources("tune", len(ffhq) + 12), face_sources("eval", EVAL_FACES)
    assert tune[:len(ffhq)] == ffhq
    assert len(tune) == len(ffhq) + 12 and len(set(tune)) == len(tune)
    assert all(p.parent.parent.name == "celebref512" for p in tune[len(ffhq):])
    assert not set(tune) & set(evaluation)
    assert face_sources("tune", 3) == ffhq[:3]


def test_evaluation_faces_are_spread_and_named_unambiguously(faces_hq_dir):
    evaluation = face_sources("eval", EVAL_FACES)
    names = [face_name(p) for p in evaluation]
    assert len(evaluation) == EVAL_FACES and len(set(names)) == EVAL_FACES
    assert len({p.name for p in evaluation}) < EVAL_FACES  # file names alone would collide
    assert len({p.parent for p in evaluation}) >= EVAL_FACES - 1  # one photo per identity, nearly


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=4, max_size=4), st.floats(0, 1), st.floats(0, 1))
def test_interp_is_exact_on_bilinear_functions(coeffs, w_c, w_h):
    a, b, c, d = coeffs
    wc, wh = np.meshgrid(GRID, GRID, indexing="ij")
    table = np.stack([a + b * wc + c * wh + d * wc * wh, -(a + b * wc + c * wh + d * wc * wh)], axis=-1)
    expected = a + b * w_c + c * w_h + d * w_c * w_h
    np.testing.assert_allclose(_interp(table, w_c, w_h), [expected, -expected], atol=1e-9)
