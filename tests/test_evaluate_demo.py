"""scripts/evaluate_demo.py's tables: means per severity third over the given records, "-" where a row has none."""

from __future__ import annotations

import math

import numpy as np
import pytest

from script_modules import load_script
from utils.feature_stats import kid

evaluate_demo = load_script("evaluate_demo")


def _record(key, psnr, start_t=None, id_dist=None):
    metrics = {"psnr": psnr, **({"id_dist": id_dist} if id_dist is not None else {})}
    return {"key": key, "metrics": metrics, **({"start_t": start_t} if start_t is not None else {})}


def test_summary_means_per_third_skip_missing_values():
    severity = {"a": "mild", "b": "mild", "c": "severe"}
    records = [_record("a", 30.0, 100, 0.2), _record("b", 20.0, 300), _record("c", 10.0, 500, 0.8)]
    s = evaluate_demo.summarise(records, severity)
    assert s["all"]["n"] == 3 and s["all"]["psnr"] == pytest.approx(20.0)
    assert s["mild"]["psnr"] == pytest.approx(25.0) and s["severe"]["start_t"] == 500
    assert s["all"]["id_dist"] == pytest.approx(0.5)  # the face without an embedding is left out, not zero
    assert s["medium"]["n"] == 0


def test_markdown_shows_a_dash_for_rows_without_a_start_step():
    severity = {"a": "mild"}
    lq = evaluate_demo.summarise([_record("a", 25.0)], severity)
    rm0 = evaluate_demo.summarise([_record("a", 26.0, -1)], severity)
    text = evaluate_demo.markdown([("LQ (input)", lq), ("RM0 only", rm0)])
    lq_row = next(line for line in text.splitlines() if line.startswith("| LQ (input)"))
    rm0_row = next(line for line in text.splitlines() if line.startswith("| RM0 only"))
    assert "| 25.00 |" in lq_row and "nan" not in text
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert rm0_row.split(" | ")[header.split(" | ").index("start t")] == "-"
    assert rm0_row.split(" | ")[header.split(" | ").index("KID (VGG16)")] == "-"  # no features given


def test_kid_column_per_group_is_kid_of_the_groups_features():
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in range(12)]
    severity = {k: ("mild" if i < 6 else "severe") for i, k in enumerate(keys)}
    hq = {k: rng.normal(size=8) for k in keys}
    records = [{**_record(k, 20.0), "vgg_features": hq[k] + 0.5 * rng.normal(size=8)} for k in keys]
    s = evaluate_demo.summarise(records, severity, hq)
    mild = [r for r in records if severity[r["key"]] == "mild"]
    expected = kid(np.stack([r["vgg_features"] for r in mild]), np.stack([hq[r["key"]] for r in mild]))
    assert (s["mild"]["kid_vgg"], s["mild"]["kid_vgg_std"]) == expected
    assert math.isnan(s["medium"].get("kid_vgg", math.nan)) and s["all"]["kid_vgg"] != s["mild"]["kid_vgg"]
