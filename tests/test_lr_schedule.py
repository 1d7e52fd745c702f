"""utils.lr_schedule.lr_at against its closed form (warm-up line, cosine end points and midpoint)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.lr_schedule import lr_at


def test_warmup_is_linear_then_constant():
    assert [lr_at(s, lr=0.4, total=10, warmup=4) for s in (1, 2, 4, 5, 10, 11)] == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]


def test_cosine_end_points_and_midpoint():
    kw = dict(lr=1e-3, total=110, warmup=10, schedule="cosine", min_lr=1e-5)
    assert lr_at(10, **kw) == pytest.approx(1e-3)  # end of warm-up
    assert lr_at(60, **kw) == pytest.approx((1e-3 + 1e-5) / 2)  # p = 1/2
    assert lr_at(110, **kw) == pytest.approx(1e-5)  # p = 1
    assert lr_at(500, **kw) == pytest.approx(1e-5)  # clipped after the end
    p = 0.3  # step 40
    assert lr_at(40, **kw) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * p)))


@settings(max_examples=40, deadline=None)
@given(total=st.integers(2, 400), warmup=st.integers(0, 50), data=st.data())
def test_cosine_is_non_increasing_after_warmup_and_bounded(total, warmup, data):
    step = data.draw(st.integers(warmup + 1, warmup + total + 20))
    kw = dict(lr=2e-4, total=total, warmup=warmup, schedule="cosine", min_lr=1e-5)
    assert 1e-5 - 1e-15 <= lr_at(step, **kw) <= 2e-4 + 1e-15
    assert lr_at(step + 1, **kw) <= lr_at(step, **kw) + 1e-15


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="lr schedule must be one of"):
        lr_at(1, lr=1.0, total=2, schedule="linear")
