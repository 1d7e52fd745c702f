"""inference_difface.py end to end: torchrun over a folder of real and broken inputs, rerun, errors.

Real processes (``python -m torch.distributed.run``, gloo on CPU) on the tiny 32 px setup of
``tests/tiny_setup.py`` (random-weight real architectures); the LQ inputs are real degraded faces from
../shared/data/real_lq, the "HQ" references are those faces resized (only the metric plumbing is tested).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from faces.align import face_template
from inference.inputs import shard
from inference.runner import main
from proc_helpers import run_checked
from tiny_setup import RESOLUTION, make_tiny_setup
from utils.image_io import list_images, read_image

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
LQ_NAMES = 5
HQ_NAMES = 3


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"), celeba_faces[:8])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, real_lq_dir):
    """5 real LQ faces + a corrupt file + a 16-bit grayscale PNG + an RGBA PNG; HQ for 3 of the faces."""
    root = tmp_path_factory.mktemp("inputs")
    lq, hq = root / "in", root / "hq"
    lq.mkdir()
    hq.mkdir()
    faces = list_images(real_lq_dir / "wider_like")[:LQ_NAMES]
    for f in faces:
        shutil.copy(f, lq / f.name)
    for f in faces[:HQ_NAMES]:
        cv2.imwrite(str(hq / f.name), cv2.resize(cv2.imread(str(f)), (64, 64), interpolation=cv2.INTER_AREA))
    (lq / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    bgr = cv2.imread(str(faces[0]))
    cv2.imwrite(str(lq / "gray16.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    cv2.imwrite(str(lq / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    (lq / "readme.txt").write_text("not an image")
    return lq, hq, [f.stem for f in faces]


def _torchrun(nproc: int, args: list, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "inference_difface.py", *args]
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def _records(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))}


@pytest.mark.slow
def test_two_processes_restore_every_valid_input_once_then_rerun_skips(
    tiny_config, inputs, lpips_weights_dir, tmp_path, capsys
):
    lq, hq, stems = inputs
    out = tmp_path / "out"
    args = [
        "-i",
        str(lq),
        "-i_hq",
        str(hq),
        "-o",
        str(out),
        "--bs",
        "2",
        "--aligned",
        "--config",
        str(tiny_config),
        "--lpips_weights",
        str(lpips_weights_dir),
        "--save_intermediates",
        "--seed",
        "3",
    ]
    proc = _torchrun(2, args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    valid = sorted(stems + ["gray16", "rgba"])
    records = _records(out)
    assert sorted(records) == valid
    # each rank restored exactly its share files[rank::2] of the sorted listing (broken.png included)
    listing = [p.stem for p in list_images(lq)]
    for rank in range(2):
        mine = [s for s in shard(listing, rank, 2) if s != "broken"]
        assert sorted(k for k, r in records.items() if r["rank"] == rank) == sorted(mine)
    for stem in valid:
        img = read_image(out / "restored" / f"{stem}.png")
        side = min(read_image(lq / f"{stem}.png").shape[:2])  # a face larger than the model: at its own size
        assert img.shape == ((side, side, 3) if side > RESOLUTION else (RESOLUTION, RESOLUTION, 3))
        assert (out / "intermediates" / f"{stem}.png").is_file()
        r = records[stem]
        assert r["method"] == "dynfacerestore" and r["nfe"] == r["start_index"] + 1 and r["seconds"] > 0
        assert (r["metrics"] is not None) == (stem in stems[:HQ_NAMES])
    assert not (out / "restored" / "broken.png").exists()
    assert "broken.png: skipped: not a decodable image" in log
    assert "gray16.png: converted: 16-bit" in log and "grayscale" in log
    assert "rgba.png: converted: alpha kept" in log
    assert "readme.txt" in log and "IHDR" not in log  # ignored non-image file is reported
    assert any("16-bit" in n for n in records["gray16"]["notes"])
    # intermediates JSON and strip: LQ | 3 levels | guidance | result
    inter = json.loads((out / "intermediates" / f"{stems[0]}.json").read_text())
    assert len(inter["tiles"]) == 6 and inter["sigma_hat"] == pytest.approx(records[stems[0]]["sigma_hat"])
    # metrics.csv: one row per image, metric cells exactly for the images with an HQ reference
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["key"] for r in rows) == valid
    psnr_col = "psnr_rgb[basicsr,uint8,crop0]"
    assert sorted(r["key"] for r in rows if r[psnr_col]) == sorted(stems[:HQ_NAMES])
    assert "lpips_alex[v0.1,[-1,1]]" in rows[0]
    summary = json.loads((out / "summary.json").read_text())["methods"]["dynfacerestore"]
    expected_psnr = np.mean([records[s]["metrics"]["psnr"] for s in stems[:HQ_NAMES]])
    assert summary["mean"]["psnr"] == pytest.approx(expected_psnr)
    assert summary["num_images"] == len(valid) and summary["num_with_metrics"] == HQ_NAMES

    # rerun (one process this time): nothing new restored, records untouched, the log says why
    before = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    capsys.readouterr()
    assert main(args) == 0
    rerun_log = capsys.readouterr().out
    assert f"skipped {len(valid)} of {len(listing)} file(s) already restored" in rerun_log
    assert {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == before
    assert "broken.png: skipped" in rerun_log  # never restored, so attempted again and reported again


@pytest.mark.slow
def test_paper_command_as_written(tiny_config, inputs, lpips_weights_dir, tmp_path):
    """The paper's command line (8 processes, fp16 flag on CPU) plus --config for the tiny setup."""
    lq, hq, stems = inputs
    few = tmp_path / "few"
    few.mkdir()
    for s in stems[:2]:
        shutil.copy(lq / f"{s}.png", few / f"{s}.png")
    out = tmp_path / "result"
    cmd = [
        "-i",
        str(few),
        "-i_hq",
        str(hq),
        "--bs",
        "2",
        "-o",
        str(out),
        "--task",
        "restoration",
        "--eta",
        "0.5",
        "--aligned",
        "--use_fp16",
        "--config",
        str(tiny_config),
    ]
    env_backup = ENV.get("DYNFACE_LPIPS_WEIGHTS")
    ENV["DYNFACE_LPIPS_WEIGHTS"] = str(lpips_weights_dir)
    try:
        proc = _torchrun(8, cmd)
    finally:
        ENV.pop("DYNFACE_LPIPS_WEIGHTS") if env_backup is None else ENV.update(DYNFACE_LPIPS_WEIGHTS=env_backup)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "precision fp16 ignored" in log
    records = _records(out)
    assert sorted(records) == sorted(stems[:2])
    assert all(r["eta"] == 0.5 and r["metrics"]["lpips_alex"] >= 0 for r in records.values())
    assert sorted(r["rank"] for r in records.values()) == [0, 1]  # ranks 2..7 had no file and still finished


def test_difface_method_and_seed_independence(tiny_config, inputs, tmp_path):
    lq, _, stems = inputs
    base = ["-i", str(lq / f"{stems[1]}.png"), "--aligned", "--config", str(tiny_config), "--seed", "5"]
    assert main(base + ["-o", str(tmp_path / "a"), "--method", "difface", "--save_intermediates"]) == 0
    rec = _records(tmp_path / "a")[stems[1]]
    assert rec["method"] == "difface" and rec["sigma_hat"] is None and rec["start_index"] == 10
    inter = json.loads((tmp_path / "a" / "intermediates" / f"{stems[1]}.json").read_text())
    assert inter["tiles"] == ["LQ", "RM0(y)", "result"]
    # the same image restored alone or in a batch with others, by one process: identical result
    assert (
        main(
            [
                "-i",
                str(lq),
                "--aligned",
                "--config",
                str(tiny_config),
                "--seed",
                "5",
                "--bs",
                "3",
                "-o",
                str(tmp_path / "b"),
                "--method",
                "difface",
            ]
        )
        == 0
    )
    a = read_image(tmp_path / "a" / "restored" / f"{stems[1]}.png")
    b = read_image(tmp_path / "b" / "restored" / f"{stems[1]}.png")
    np.testing.assert_array_equal(a, b)


def test_missing_checkpoint_stops_at_startup_naming_the_file(tiny_config, inputs, tmp_path, capsys):
    lq, _, _ = inputs
    cfg = tmp_path / "bad.yaml"
    missing = tmp_path / "nowhere" / "unet.pth"
    cfg.write_text(tiny_config.read_text().replace(str(tiny_config.parent / "unet.pth"), str(missing)))
    assert main(["-i", str(lq), "-o", str(tmp_path / "o"), "--aligned", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint not found: " + str(missing)) and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--task", "inpainting"], "--task 'inpainting' is not supported"),
        (["--opts", "sampler.guidance.mode=sometimes"], "sampler.guidance.mode"),
        (["--opts", "sampler.no_such_key=1"], "no_such_key"),
        (["--eta", "2"], "eta must be in [0, 1]"),
        (["--use_fp16", "--precision", "bf16"], "--use_fp16 contradicts --precision bf16"),
        (["--detector", "retinaface"], "detection_Resnet50_Final.pth"),  # RetinaFace asked for without its weights
        (["--min_face_size", "0"], "--min_face_size must be at least 1"),
        (["--opts", "paste.mode=soft"], "paste.mode"),
        (["--opts", "paste.correction_max=2"], "paste.correction_max"),
        (["--steps", "999"], "cannot create exactly 999 steps"),
        (["--steps", "0"], "--steps must be in [1, 1000]"),
    ],
)
def test_startup_errors_exit_2_with_one_line(tiny_config, inputs, tmp_path, capsys, extra, expected):
    lq, _, _ = inputs
    aligned = ["--detection_weights", str(tmp_path / "none.pth")] if "--detector" in extra else ["--aligned"]
    code = main(["-i", str(lq), "-o", str(tmp_path / "o"), "--config", str(tiny_config), *aligned, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1


class _TemplateDetector:
    """Stub detector: one face whose landmarks are the FFHQ template of a 48 px face placed at (8, 4)."""

    name = "template stub"

    def detect(self, img):
        lm = face_template(48) + np.array([8.0, 4.0])
        return np.array([[8, 4, 56, 52, 0.99]]), lm[None]


def test_unaligned_whole_image_pastes_faces_back(tiny_config, inputs, tmp_path):
    lq, hq, stems = inputs
    whole = tmp_path / "whole"
    whole.mkdir()
    img = cv2.resize(cv2.imread(str(lq / f"{stems[0]}.png")), (72, 60), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(whole / f"{stems[0]}.png"), img)
    out = tmp_path / "o"
    assert (
        main(
            ["-i", str(whole), "-i_hq", str(hq), "-o", str(out), "--config", str(tiny_config), "--upscale", "2"],
            detector=_TemplateDetector(),
        )
        == 0
    )
    rec = _records(out)[stems[0]]
    assert read_image(out / "restored" / f"{stems[0]}.png").shape == (120, 144, 3)
    assert read_image(out / "restored_faces" / f"{stems[0]}_00.png").shape == (RESOLUTION, RESOLUTION, 3)
    assert rec["num_faces"] == 1 and rec["nfe"] == rec["faces"][0]["nfe"] > 0 and "psnr" in rec["metrics"]
    w_c, w_h = rec["faces"][0]["paste_weights"]  # the default: resolution-aware
    assert 0.0 <= w_c <= 1.0 and 0.0 <= w_h <= 1.0
    classic = tmp_path / "classic"
    assert (
        main(
            [
                "-i",
                str(whole),
                "-o",
                str(classic),
                "--config",
                str(tiny_config),
                "--upscale",
                "2",
                "--paste",
                "classic",
            ],
            detector=_TemplateDetector(),
        )
        == 0
    )
    assert _records(classic)[stems[0]]["faces"][0]["paste_weights"] is None
    assert _records(classic)[stems[0]]["overrides"] == ["paste.mode=classic"]


def test_nothing_restored_exits_1(tiny_config, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    cv2.imwrite(str(bad / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["-i", str(bad), "-o", str(tmp_path / "o"), "--aligned", "--config", str(tiny_config)]) == 1


def test_an_output_folder_inside_the_input_folder_is_not_read_back(tiny_config, inputs, tmp_path):
    """``-i names -o names/results --recursive`` run twice (and ``-o names`` itself): the second run restores
    nothing new, lists no result as an input, and says what it left out."""
    lq, _, stems = inputs
    keys = sorted([stems[0], f"sub/{stems[1]}"])
    for case in ("results", "same"):
        names = tmp_path / case / "names"
        (names / "sub").mkdir(parents=True)
        shutil.copy(lq / f"{stems[0]}.png", names / f"{stems[0]}.png")
        shutil.copy(lq / f"{stems[1]}.png", names / "sub" / f"{stems[1]}.png")
        out = names / "results" if case == "results" else names
        args = [
            sys.executable,
            "inference_difface.py",
            "-i",
            str(names),
            "-o",
            str(out),
            "--recursive",
            "--aligned",
            "--config",
            str(tiny_config),
        ]
        run_checked(args)
        records = {p: p.read_bytes() for p in sorted((out / "records").rglob("*.json"))}
        assert sorted(json.loads(r)["key"] for r in records.values()) == keys
        second = run_checked(args).stdout
        assert "skipped 2 of 2 file(s) already restored" in second and "restored 0 of 0 attempted" in second
        left_out = [line for line in second.splitlines() if "under the output folder" in line]
        assert len(left_out) == (1 if out != names else 2), second  # names: restored/ and records/
        assert {p: p.read_bytes() for p in sorted((out / "records").rglob("*.json"))} == records
        assert sorted(p.relative_to(out / "restored").as_posix() for p in (out / "restored").rglob("*.png")) == [
            f"{key}.png" for key in keys
        ]


def test_a_captured_log_holds_one_plain_line_per_note(tiny_config, inputs, tmp_path):
    """Two processes with the paper's --use_fp16 on the CPU, stdout and stderr in one captured log: the
    fp16 warning once, as one plain line without its source line; no progress bar, no blank line (a bar
    cleared around each note left them, ``\\r`` counting as a line break in a log)."""
    lq, _, _ = inputs
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "inference_difface.py",
        "-i",
        str(lq),
        "-o",
        str(tmp_path / "out"),
        "--aligned",
        "--use_fp16",
        "--config",
        str(tiny_config),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert all(line.strip() for line in lines), lines
    fp16 = [line for line in lines if "precision fp16 ignored" in line]
    assert fp16 == [
        "[rank 0] warning: precision fp16 ignored: half precision runs on CUDA only; sampling in float32 on the cpu"
    ]
    assert "sampler.py" not in proc.stdout and "restoring" not in proc.stdout
    assert any("rgba.png: converted: alpha kept" in line for line in lines)
