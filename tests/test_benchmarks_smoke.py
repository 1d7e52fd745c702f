"""Smoke test of the benchmark scripts (benchmarks/): each runs once at its smallest setting and prints the
markdown rows it promises. Not a timing test: no number is checked, only that the rows are there.

The scripts are run at 64 px with a tiny layout monkeypatched in (the real 64 px layouts would take
minutes on a shared CPU), one repeat, ddim10 (5 UNet evaluations per DifFace image).
"""

from __future__ import annotations

import re

import pytest

from benchmarks import (
    bench_dblm,
    bench_sampler,
    bench_sigma_star,
    bench_step_breakdown,
    bench_steps,
    bench_train_precision,
    common,
)
from tests import tiny_setup


@pytest.fixture
def tiny_layouts(monkeypatch, faces_hq_dir):
    """64 px with the tiny test layouts of tests/tiny_setup.py (image sizes adjusted to 64 px)."""
    swin = dict(tiny_setup.SWINIR_SMALL, img_size=32)
    nodes = {
        "unet": {"target": tiny_setup.UNET["target"], "params": dict(tiny_setup.UNET["params"], image_size=64)},
        "restorer": {"target": "models.swinir.SwinIR", "params": dict(swin, in_chans=3)},
        "sde": tiny_setup.SDE,
        "tm": {"target": tiny_setup.TM["target"], "params": {"swinir": swin}},
        "rm": {"target": tiny_setup.RM["target"], "params": {"swinir": swin}},
        "dgsa": {
            "target": "models.dgsa.DGSA",
            "params": {"model_channels": 32, "channel_mult": [1, 1], "map_downsample": 2},
        },
    }
    monkeypatch.setattr(common, "architectures", lambda resolution: nodes)
    monkeypatch.setattr(common, "NUM_DSST_FACES", 2)


def _rows(text: str, first_cells) -> None:
    for cells in first_cells:
        assert any(line.startswith("| " + " | ".join(cells) + " |") for line in text.splitlines()), (cells, text)


def test_step_breakdown_smoke(tiny_layouts, tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert (
        bench_step_breakdown.main(
            [
                "--resolution",
                "64",
                "--repeats",
                "1",
                "--respacing",
                "ddim10",
                "--workdir",
                str(tmp_path / "wd"),
                "--unet-variants",
                "channels_last",
                "bf16",
                "--guidance-batches",
                "2",
                "--guidance-repeats",
                "1",
                "--write",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out
    assert "## Step breakdown, 64 px" in text and "- command: `python -m benchmarks.bench_step_breakdown" in text
    _rows(
        text,
        [
            ("1", "UNet"),
            ("1", "DGSA"),
            ("1", "DGSA at full resolution (map_downsample 1)"),
            ("1", "guidance, closed_form_guidance per step"),
            ("1", "guidance, LevelSpectra.solve per step"),
            ("1", "step w/o UNet, guided, fresh DGSA map"),
            ("1", "step w/o UNet, guided, reused DGSA map"),
            ("1", "mean step w/o UNet, dgsa_every = 4"),
            ("1", "guidance, one level (LevelSpectra.solve_level per step, the sampler's)"),
            ("1", "step w/o UNet, unguided (DifFace)"),
            ("1", "x0 modifier, reused DGSA map"),
            ("1", "fp32 (baseline)"),
            ("1", "channels_last"),
            ("1", "bf16 trunk (precision bf16)"),
            ("2", "LevelSpectra.solve per step (pad 16)"),
        ],
    )
    assert "claim 'guidance + DGSA + step overhead < 15 % of the UNet'" in text
    assert "| % of UNet | ms / image | ATen ops |" in text
    assert re.search(r"^\| 1 \| UNet \|.* \| [1-9]\d* \|$", text, re.M), "the UNet row counts its operations"


def test_dblm_and_sampler_smoke(tiny_layouts, tmp_path):
    out = tmp_path / "bench.md"
    wd = str(tmp_path / "wd")
    assert (
        bench_dblm.main(
            ["--resolution", "64", "--repeats", "1", "--workdir", wd, "--write", "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    assert (
        bench_sampler.main(
            [
                "--resolution",
                "64",
                "--respacing",
                "ddim10",
                "--workdir",
                wd,
                "--faces",
                "3",
                "--batches",
                "2",
                "--mem-batches",
                "1",
                "--compile",
                "eager",
                "--write",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = out.read_text()
    _rows(
        text,
        [
            ("1", "SDE"),
            ("1", "TM"),
            ("1", "RM"),
            ("1", "DBLM forward (K = 3)"),
            ("1", "RM0 restorer (DifFace)"),
            ("mild",),
            ("severe",),
            ("DifFace",),
            ("DynFaceRestore",),
            ("2", "DifFace"),
            ("2", "DynFaceRestore"),
            ("step w/o UNet, guided, fresh DGSA map",),
            ("all", "3", "DifFace", "101"),
            ("all", "3", "DynFaceRestore, dgsa_every = 1"),
            ("1", "step"),
            ("DifFace, compiled",),
            ("DynFaceRestore, compiled",),
        ],
    )
    assert re.search(r"^\| all \| 3 \| DynFaceRestore, dgsa_every = \d+ \(config\) \|", text, re.M)
    assert "DifFace | 4 | 400 | 5 |" in text
    assert "claim 'DynFaceRestore mean time per face <= DifFace'" in text


def test_train_precision_smoke(tiny_layouts, tmp_path):
    out = tmp_path / "bench.md"
    assert (
        bench_train_precision.main(
            ["--resolution", "64", "--repeats", "1", "--batch", "2", "--write", "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    text = out.read_text()
    assert "## Training step, fp32 vs bf16 autocast, 64 px" in text
    for name in ("unet", "restorer", "sde", "tm", "rm"):
        _rows(text, [(name,)])
        assert re.search(rf"^\| {name} \| [\d.]+ \| bf16 autocast \| ", text, re.M), name


def test_sigma_star_smoke(tmp_path):
    out = tmp_path / "bench.md"
    assert (
        bench_sigma_star.main(
            ["--resolution", "64", "--faces", "2", "--repeats", "1", "--write", "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    text = out.read_text()
    _rows(text, [("Fourier (sigma_star)",), ("spatial (sigma_star_spatial)",)])
    assert "largest |Fourier - spatial|" in text


def test_steps_smoke(tiny_layouts, tmp_path, real_lq_dir):
    """Composed rows add up (DBLM + UNet + DGSA + step rest = total; ratio to DifFace's default); the demo
    models end to end on two real faces."""
    out = tmp_path / "bench.md"
    assert (
        bench_steps.main(
            [
                "--resolution",
                "64",
                "--workdir",
                str(tmp_path / "wd"),
                "--faces",
                "3",
                "--component-repeats",
                "1",
                "--steps",
                "25",
                "12",
                "--write",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| DynFaceRestore |")]
    difface = next(
        line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| DifFace default")
    )
    assert [r[1].strip() for r in rows] == ["ddim25", "ddim12"]
    for r in rows:
        unet, dblm, dgsa, rest, total, ratio = (float(r[k]) for k in (3, 4, 5, 6, 7, 9))
        assert total == pytest.approx(unet + dblm + dgsa + rest, rel=1e-3)
        assert ratio == pytest.approx(total / float(difface[7]), rel=1e-3)
    lq = tmp_path / "lq"
    lq.mkdir()
    for name in ("0143.png", "0240.png"):
        (lq / name).write_bytes((real_lq_dir / "wider_like" / name).read_bytes())
    assert (
        bench_steps.main(
            [
                "--demo-lq",
                str(lq),
                "--steps",
                "12",
                "--solvers",
                "dpmpp_2m",
                "--write",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    _rows(
        out.read_text(),
        [
            ("difface", "250", "ddim", "-"),
            ("dynfacerestore", "250", "ddim", "once"),
            ("dynfacerestore", "12", "dpmpp_2m", "twice"),
        ],
    )
