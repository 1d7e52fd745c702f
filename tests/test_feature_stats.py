"""utils.feature_stats: Fréchet distance against closed forms and scipy's sqrtm, KID against a brute-force
double sum, statistics files (ours and basicsr's .pth layout)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from basicsr.metrics.fid import calculate_fid
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg
from scipy.stats import special_ortho_group

import utils.basicsr_compat  # noqa: F401
from utils.feature_stats import (
    StatsError,
    feature_stats,
    frechet_distance,
    kid,
    kid_subset_size,
    load_stats,
    mmd2_unbiased,
    save_stats,
)

positive = st.floats(0.01, 10.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda d: st.tuples(
            st.lists(st.floats(-5, 5), min_size=d, max_size=d),
            st.lists(st.floats(-5, 5), min_size=d, max_size=d),
            st.lists(positive, min_size=d, max_size=d),
            st.lists(positive, min_size=d, max_size=d),
            st.integers(0, 2**31 - 1),
        )
    )
)
def test_frechet_distance_of_gaussians_with_common_eigenvectors_is_the_closed_form(case):
    """C1 = Q diag(a) Q^T, C2 = Q diag(b) Q^T commute: d^2 = ||mu1 - mu2||^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    mu1, mu2, a, b, seed = (np.asarray(v, np.float64) if isinstance(v, list) else v for v in case)
    d = len(a)
    q = special_ortho_group.rvs(d, random_state=seed) if d > 1 else np.ones((1, 1))
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-7, abs=1e-7)


def test_frechet_distance_in_one_dimension_is_the_wasserstein_formula():
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_frechet_distance_matches_the_symmetric_sqrtm_form_and_basicsr(seed):
    """Random full covariances: Tr (C1 C2)^(1/2) = Tr (C1^(1/2) C2 C1^(1/2))^(1/2), the latter with scipy's sqrtm
    of symmetric matrices; basicsr's calculate_fid gives the same."""
    rng = np.random.default_rng(seed)
    d = 12
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, 3 * d))
    c1, c2 = a @ a.T + 0.1 * np.eye(d), b @ b.T / (3 * d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    root1 = np.real(linalg.sqrtm(c1))
    expected = (
        np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(np.real(linalg.sqrtm(root1 @ c2 @ root1)))
    )
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(float(calculate_fid(mu1, c1, mu2, c2)), rel=1e-9)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-8)


def test_rank_deficient_covariances_give_a_finite_distance():
    """Fewer samples than dimensions (FID on 100 faces): singular covariances, still finite and >= 0."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 20)), rng.normal(size=(5, 20)) + 1.0
    value = frechet_distance(*feature_stats(x), *feature_stats(y))
    assert np.isfinite(value) and value > 0


def brute_force_mmd2(x, y):
    """The unbiased MMD^2 as three explicit double sums over the rows."""
    d = x.shape[1]
    k = lambda u, v: (float(np.dot(u, v)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("seed", range(3))
def test_mmd2_matches_the_brute_force_double_sum(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5)) * 1.5 + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(brute_force_mmd2(x, y), rel=1e-12)


def test_kid_averages_the_brute_force_over_the_same_subsets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(10, 4)) + 0.5
    mean, std = kid(x, y, subsets=6, subset_size=5, seed=3)
    draw = np.random.default_rng(3)
    values = [
        brute_force_mmd2(x[draw.choice(12, 5, replace=False)], y[draw.choice(10, 5, replace=False)]) for _ in range(6)
    ]
    assert mean == pytest.approx(np.mean(values), rel=1e-12) and std == pytest.approx(np.std(values), rel=1e-9)
    whole = kid(x[:10], y, subsets=3, subset_size=10)  # every subset is all of both sets
    assert whole[1] == pytest.approx(0.0, abs=1e-12)


def test_kid_is_unbiased_for_one_distribution():
    """E[MMD^2] = 0 for two samples of one distribution: the mean over many draws is within 3 standard errors."""
    rng = np.random.default_rng(2)
    values = [mmd2_unbiased(rng.normal(size=(20, 3)), rng.normal(size=(20, 3))) for _ in range(400)]
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))


def test_kid_subset_size():
    assert kid_subset_size(5000, 3000) == 1000 and kid_subset_size(100, 100) == 50 and kid_subset_size(3, 100) == 2
    with pytest.raises(ValueError, match="subset size"):
        kid(np.zeros((4, 2)), np.zeros((4, 2)), subset_size=5)


def test_statistics_files_round_trip_and_basicsr_layout(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = feature_stats(rng.normal(size=(10, 3)))
    ours = save_stats(tmp_path / "s.npz", mu, sigma, n=10)
    got = load_stats(ours)
    assert np.array_equal(got[0], mu) and np.array_equal(got[1], sigma)
    torch.save({"name": "FFHQ", "size": 512, "mean": mu, "cov": sigma}, tmp_path / "basicsr.pth")  # basicsr's format
    got = load_stats(tmp_path / "basicsr.pth")
    assert np.array_equal(got[0], mu) and np.array_equal(got[1], sigma)


@pytest.mark.parametrize("content", [b"", b"garbage", "truncated"])
def test_a_bad_statistics_file_is_one_line(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        torch.save({"mean": np.zeros(4), "cov": np.eye(4)}, path)
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(content)
    with pytest.raises(StatsError) as err:
        load_stats(path)
    assert len(str(err.value).splitlines()) == 1 and "bad.pth" in str(err.value)
    torch.save({"mean": np.zeros(4), "cov": np.eye(3)}, path)
    with pytest.raises(StatsError, match="do not match"):
        load_stats(path)
