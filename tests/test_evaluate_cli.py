"""scripts/evaluate.py as a real process on folders of real faces: offline (unavailable metrics named, exit 0),
with random weights at the real layouts (every metric computed), --make-stats, a truncated weights file."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import cv2
import pytest
from eval_weight_layouts import save_random_eval_weights

from tests.proc_helpers import run_checked
from utils.eval_weights import EVAL_WEIGHTS
from utils.image_io import read_image, write_image

N_FACES = 4


@pytest.fixture(scope="module")
def folders(tmp_path_factory, celeba_val_faces):
    """hq/: real faces; blurred/: them blurred; same/: copies (the same file stems)."""
    root = tmp_path_factory.mktemp("evaluate")
    for path in celeba_val_faces[:N_FACES]:
        img = read_image(path)
        write_image(root / "hq" / path.name, img)
        write_image(root / "same" / path.name, img)
        write_image(root / "blurred" / path.name, cv2.GaussianBlur(img, (0, 0), 2.0))
    return root


def evaluate(*args) -> str:
    return run_checked([sys.executable, "scripts/evaluate.py", *map(str, args)], timeout=600).stdout


def test_offline_two_folders_print_the_table_and_name_the_unavailable_metrics(folders, lpips_weights_dir, tmp_path):
    out = evaluate(
        "--restored",
        folders / "blurred",
        folders / "same",
        "--hq",
        folders / "hq",
        "--lpips-weights",
        lpips_weights_dir,
        "--weights-dir",
        tmp_path / "none",
        "--out",
        tmp_path / "table",
    )
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| restored |"))
    for label in ("PSNR", "SSIM", "LPIPS", "ID dist (dlib)", "LMD (dlib)"):
        assert label in header
    blurred = next(line for line in lines if line.startswith(f"| {folders / 'blurred'} |"))
    assert blurred.count(f"(n={N_FACES})") >= 5
    for name in ("arcface", "lmd_awing", "fid", "kid"):
        assert f"unavailable: {name}: " in out and "python scripts/download_weights.py --eval" in out
    assert "unavailable: fid_stats: needs --fid-stats" in out
    if importlib.util.find_spec("pyiqa") is None:
        assert "unavailable: musiq: needs pyiqa" in out and "unavailable: clipiqa: needs pyiqa" in out
    assert "NIQE skipped 4" in out and "(too small)" in out  # 128 px faces hold one 96 px block
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    psnr = {r["restored"]: r for r in rows if r["metric"] == "psnr"}
    assert psnr[str(folders / "same")]["mean"] == "inf" and float(psnr[str(folders / "blurred")]["mean"]) > 20
    report = json.loads((tmp_path / "table.json").read_text())
    assert set(report["unavailable"]) >= {"arcface", "lmd_awing", "fid", "kid", "fid_stats"}
    assert len(report["images"][str(folders / "blurred")]) == N_FACES


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    return save_random_eval_weights(tmp_path_factory.mktemp("weights"))


def test_every_metric_runs_with_weights_at_the_real_layouts(folders, random_weights, tmp_path):
    """FID against the HQ folder equals FID against the statistics --make-stats writes of that folder."""
    evaluate("--make-stats", folders / "hq", "--out", tmp_path / "hq_stats.npz", "--weights-dir", random_weights)
    evaluate(
        "--restored",
        folders / "blurred",
        folders / "same",
        "--hq",
        folders / "hq",
        "--fid-stats",
        tmp_path / "hq_stats.npz",
        "--weights-dir",
        random_weights,
        "--out",
        tmp_path / "all",
        "--metrics",
        "arcface",
        "lmd_awing",
        "fid",
        "fid_stats",
        "kid",
    )
    report = json.loads((tmp_path / "all.json").read_text())
    assert report["unavailable"] == {}
    blurred, same = (report["results"][str(folders / name)] for name in ("blurred", "same"))
    for column in ("arcface_cos", "arcface_deg", "lmd_awing", "fid", "fid_stats", "kid"):
        assert blurred[column]["n"] == N_FACES and blurred[column]["mean"] is not None
    assert blurred["fid_stats"]["mean"] == pytest.approx(blurred["fid"]["mean"], rel=1e-9)
    assert blurred["fid"]["mean"] > 0 and abs(same["fid"]["mean"]) <= 1e-3 * blurred["fid"]["mean"]
    assert same["arcface_cos"]["mean"] == pytest.approx(0.0, abs=1e-6) and same["lmd_awing"]["mean"] == 0.0
    assert blurred["kid"]["std"] >= 0


def test_a_truncated_weights_file_is_one_unavailable_line(folders, random_weights, tmp_path):
    source = EVAL_WEIGHTS["arcface"].target(random_weights)
    EVAL_WEIGHTS["arcface"].target(tmp_path).write_bytes(source.read_bytes()[:1000])
    out = evaluate(
        "--restored",
        folders / "blurred",
        "--hq",
        folders / "hq",
        "--weights-dir",
        tmp_path,
        "--metrics",
        "psnr",
        "arcface",
    )
    line = next(line for line in out.splitlines() if line.startswith("unavailable: arcface"))
    assert "recognition_arcface_ir_se50.pth: not the arcface file" in line and "PSNR" in out


def test_bad_arguments_are_one_line(tmp_path):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--restored", str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not a folder with images" in proc.stderr.strip().splitlines()[-1]
