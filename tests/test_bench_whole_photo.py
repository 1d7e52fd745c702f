"""benchmarks/bench_whole_photo.py: which faces tune and which evaluate, and the grid interpolation the fit reads.

- the tuning faces never include an evaluation face (the paste parameters are chosen on other faces);
- face names carry the identity folder, so CelebRef-HQ photos with the same file name stay apart;
- ``_interp`` is bilinear: exact on any function a + b w_c + c w_h + d w_c w_h (hypothesis);
- a ``paste.*`` override keeps the cached restorations, any other change of what restores does not;
- the overall line weighs each cell once, whatever its number of faces;
- the identity difference of a cell is the paired mean of the faces dlib scores in both pastes, with the
  textbook standard error (hypothesis, against ``statistics``), and the summary row prints it;
- the fit's subsets of a cell are all of them, or random ones, without repetition, and the share of them
  meeting the constraints (with or without a share of classic's gain) equals a brute-force count over every
  subset (hypothesis); that share is asked where the model resolves a noisy or compressed face;
- the single degradations draw their strength in their range; a case does not depend on the other kinds run.
"""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_whole_photo import (
    EVAL_FACES,
    GRID,
    KINDS,
    LPIPS_TOLERANCE,
    Case,
    _case_key,
    _interp,
    cell_subsets,
    face_name,
    face_sources,
    holding_share,
    keeps_classic_gain,
    make_cases,
    overall_line,
    paired_difference,
    restoration_key,
    summary_rows,
)
from data.photo_degradation import degrade_photo


def test_tuning_faces_are_ffhq_then_celebref_outside_the_evaluation(faces_hq_dir):
    ffhq = sorted((faces_hq_dir / "ffhq1024").glob("*.png"))
    tune, evaluation = face_sources("tune", len(ffhq) + 12), face_sources("eval", EVAL_FACES)
    assert tune[: len(ffhq)] == ffhq
    assert len(tune) == len(ffhq) + 12 and len(set(tune)) == len(tune)
    assert all(p.parent.parent.name == "celebref512" for p in tune[len(ffhq) :])
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


def test_paste_overrides_reuse_the_cached_restorations():
    key = restoration_key("configs/sample/dynfacerestore_demo.yaml", [], 0, False)
    assert restoration_key("configs/sample/dynfacerestore_demo.yaml", ["paste.misfit_weight=1.0"], 0, False) == key
    for changed in (
        ("configs/sample/dynfacerestore_demo.yaml", ["sampler.timesteps=10"], 0, False),
        ("configs/sample/dynfacerestore_demo.yaml", [], 1, False),
        ("configs/sample/dynfacerestore_demo.yaml", [], 0, True),
    ):
        assert restoration_key(*changed) != key


def _scored(factor, severity, psnr_in, psnr_out, lpips_in, lpips_out, id_classic=0.5, id_aware=0.5):
    blank = np.zeros((1, 1, 3))
    case = Case("f", factor, "project", severity, (0, 0, 1, 1), blank, blank, blank, np.eye(2, 3))
    case.scores = {
        "input": {"psnr": psnr_in, "lpips": lpips_in, "id": 0.5},
        "classic": {"psnr": psnr_in, "lpips": lpips_in, "id": id_classic},
        "resolution_aware": {"psnr": psnr_out, "lpips": lpips_out, "id": id_aware},
    }
    return case


finite_or_missing = st.one_of(st.floats(0, 2), st.just(float("nan")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite_or_missing, finite_or_missing), max_size=12))
def test_paired_difference_is_the_mean_and_standard_error_of_the_scored_pairs(pairs):
    scored = [a - b for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    mean, error, n = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
    assert n == len(scored)
    if not scored:
        assert math.isnan(mean) and math.isnan(error)
        return
    assert mean == pytest.approx(statistics.fmean(scored), abs=1e-12)
    if n < 2:
        assert math.isnan(error)
    else:
        assert error == pytest.approx(statistics.stdev(scored) / math.sqrt(n), abs=1e-12)


def test_summary_row_prints_the_paired_identity_difference():
    cases = [
        _scored(0.75, "severe", 17.0, 17.0, 0.6, 0.3, id_classic=c, id_aware=a)
        for c, a in ((0.70, 0.75), (0.80, 0.77), (0.60, float("nan")))
    ]
    # pairs scored in both: +0.05 and -0.03 -> mean +0.01, sd 0.04 sqrt(2), SE 0.04
    row = summary_rows(cases)[0]
    assert row[:3] == ["0.75x", "project severe", 3]
    assert row[-5] == "+0.010 (0.040)"


def test_overall_line_weighs_each_cell_once():
    cases = [
        _scored(1.5, "severe", 20.0, 21.0, 0.6, 0.4),
        _scored(1.5, "severe", 22.0, 23.0, 0.4, 0.2),
        _scored(3.0, "mild", 30.0, 29.0, 0.2, 0.3),
    ]
    # cells: (1.5, severe) +1.0 dB, LPIPS 0.5 -> 0.3; (3, mild) -1.0 dB, 0.2 -> 0.3
    assert overall_line(cases) == (
        "resolution-aware over 2 cells: PSNR change +0.000 dB, LPIPS 0.3500 -> 0.3000; severe cells' LPIPS gain 0.200"
    )


def test_cell_subsets_are_all_subsets_or_random_distinct_ones():
    rng = np.random.default_rng(0)
    every = cell_subsets([3, 5, 7, 9, 11], 3, 200, rng)
    assert sorted(map(tuple, every)) == list(itertools.combinations([3, 5, 7, 9, 11], 3))
    assert cell_subsets([4, 8, 15], EVAL_FACES, 200, rng).tolist() == [[4, 8, 15]]  # a small cell: its mean
    drawn = cell_subsets(list(range(100, 122)), EVAL_FACES, 50, rng)
    assert drawn.shape == (50, EVAL_FACES)
    assert all(len(set(row)) == EVAL_FACES and set(row) <= set(range(100, 122)) for row in drawn)
    assert len({tuple(sorted(row)) for row in drawn}) > 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 9), size=st.integers(1, 8), margin=st.floats(0, 0.3), seed=st.integers(0, 2**31 - 1))
def test_holding_share_counts_every_subset(n, size, margin, seed):
    rng = np.random.default_rng(seed)
    changes = np.stack([rng.normal(0.05, 0.3, n), rng.normal(-0.01, 0.02, n)], axis=1)
    subsets = cell_subsets(list(range(n)), size, 10**6, rng)
    combos = list(itertools.combinations(range(n), min(size, n)))
    meets = [
        np.mean([changes[i, 0] for i in c]) >= -margin and np.mean([changes[i, 1] for i in c]) <= LPIPS_TOLERANCE
        for c in combos
    ]
    assert holding_share(changes, subsets, margin) == sum(meets) / len(combos)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 9), size=st.integers(1, 8), share=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))
def test_holding_share_asks_for_a_share_of_classics_gain(n, size, share, seed):
    rng = np.random.default_rng(seed)
    changes = np.stack([rng.normal(0.05, 0.1, n), rng.normal(-0.01, 0.02, n)], axis=1)
    classic = np.stack([rng.normal(-0.2, 0.3, n), rng.normal(-0.01, 0.02, n)], axis=1)
    subsets = cell_subsets(list(range(n)), size, 10**6, rng)
    combos = list(itertools.combinations(range(n), min(size, n)))

    def meets(c):
        psnr, lpips = np.mean([changes[i, 0] for i in c]), np.mean([changes[i, 1] for i in c])
        classic_gain = -np.mean([classic[i, 1] for i in c])
        return psnr >= -0.1 and lpips <= LPIPS_TOLERANCE and (classic_gain <= 0 or -lpips >= share * classic_gain)

    assert holding_share(changes, subsets, 0.1, classic, share) == sum(map(meets, combos)) / len(combos)


def test_the_classic_gain_is_asked_where_the_model_resolves_a_noisy_or_compressed_face():
    assert keeps_classic_gain((1.5, "project", "mild")) and keeps_classic_gain((0.75, "jpeg", "only"))
    assert keeps_classic_gain((2.0, "noise", "only"))
    assert not keeps_classic_gain((1.5, "blur", "only")) and not keeps_classic_gain((3.0, "project", "mild"))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_single_degradations_draw_their_strength_in_range(seed):
    """Noise alone on a mid-gray photo: the residual's std is the drawn one, in 5-20 /255 (8-bit rounding
    adds 1/12 of a level's square); blur alone keeps a flat photo flat; JPEG alone changes a textured one."""
    flat = np.full((64, 96, 3), 0.5, np.float32)
    noisy = degrade_photo(flat, "noise", "only", np.random.default_rng(seed))
    std = float(np.std(noisy - flat)) * 255
    assert 5 * 0.95 <= std <= 20 * 1.05 and np.array_equal(np.round(noisy * 255) / 255, noisy)
    np.testing.assert_allclose(degrade_photo(flat, "blur", "only", np.random.default_rng(seed)), flat, atol=1 / 255)
    texture = np.random.default_rng(seed).random((64, 96, 3)).astype(np.float32)
    assert float(np.abs(degrade_photo(texture, "jpeg", "only", np.random.default_rng(seed)) - texture).mean()) > 0.02


def test_cases_do_not_depend_on_the_other_kinds(faces_hq_dir):
    faces = face_sources("eval", 1)
    every = {_case_key(c): c for c in make_cases(faces, 64, (1.5,), 0)}
    some = make_cases(faces, 64, (1.5,), 0, kinds=("noise/only", "project/severe"))
    assert len(every) == len(KINDS) and [c.cell for c in some] == [(1.5, "project", "severe"), (1.5, "noise", "only")]
    for c in some:
        np.testing.assert_array_equal(c.lq_photo, every[_case_key(c)].lq_photo)
