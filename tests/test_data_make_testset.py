"""data/make_testset.py: files, manifest, severity thirds, reproducibility, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data.datasets import FaceDataset
from data.degradation import load_degradation_config, severity_config
from data.make_testset import main, make_testset
from data.sigma_star import sigma_star
from utils.image_io import read_image

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "degradation" / "difface_blind.yaml"


def test_make_testset_thirds(faces_hq_dir, tmp_path):
    source = faces_hq_dir / "celeba128_val.txt"
    m = make_testset(source, tmp_path / "a", 32, 3, CONFIG, severity_thirds=True, limit=6)
    saved = json.loads((tmp_path / "a" / "degradations.json").read_text())
    assert saved == json.loads(json.dumps(m)) and saved["seed"] == 3 and saved["resolution"] == 32
    assert [r["severity"] for r in saved["images"]] == ["mild"] * 2 + ["medium"] * 2 + ["severe"] * 2
    cfg = load_degradation_config(CONFIG)
    for r in saved["images"]:
        sub = severity_config(cfg, 32, ["mild", "medium", "severe"].index(r["severity"]))
        lo, hi = sub.downsample_range
        assert lo <= r["params"]["scale"] <= hi
        assert sub.noise_range[0] <= r["params"]["noise"] <= sub.noise_range[1]
        hq = read_image(tmp_path / "a" / r["hq"])
        lq = read_image(tmp_path / "a" / r["lq"])
        assert hq.shape == lq.shape == (32, 32, 3)
        est = sigma_star(
            torch.from_numpy(hq).permute(2, 0, 1)[None], torch.from_numpy(lq).permute(2, 0, 1)[None]
        ).item()
        assert est == pytest.approx(r["sigma_star"]) and r["sigma_star_512"] == pytest.approx(est * 16)
    scales = [r["params"]["scale"] for r in saved["images"]]
    assert max(scales[:2]) <= min(scales[2:4]) and max(scales[2:4]) <= min(scales[4:])
    assert not list((tmp_path / "a").rglob("*.tmp"))


def test_reproducible_and_equal_to_dataset(faces_hq_dir, tmp_path):
    source = faces_hq_dir / "celeba128_val.txt"
    make_testset(source, tmp_path / "a", 32, 0, CONFIG, limit=3)
    make_testset(source, tmp_path / "b", 32, 0, CONFIG, limit=3)
    names = sorted(p.name for p in (tmp_path / "a" / "lq").iterdir())
    assert len(names) == 3
    for name in names:
        assert (tmp_path / "a" / "lq" / name).read_bytes() == (tmp_path / "b" / "lq" / name).read_bytes()
    ds = FaceDataset(source, 32, flip=False, degradation=CONFIG, seed=0)
    lq0 = read_image(tmp_path / "a" / "lq" / f"{Path(ds[0]['path']).stem}.png")
    expected = ds[0]["lq"].permute(1, 2, 0).numpy() * 0.5 + 0.5
    assert np.abs(lq0 - expected).max() <= 0.5 / 255 + 1e-6


def test_cli(faces_hq_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "data.make_testset",
        "--source",
        str(faces_hq_dir / "celeba128_val.txt"),
        "--out",
        str(tmp_path / "cli"),
        "--resolution",
        "32",
        "--seed",
        "1",
        "--limit",
        "2",
    ]
    ok = subprocess.run(cmd + ["--config", str(CONFIG)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "cli" / "hq").glob("*.png"))) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("jpeg_range: [10, 200]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(cmd[3:] + ["--config", str(bad)])
    assert "jpeg_range" in str(exit_info.value)
