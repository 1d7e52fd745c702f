"""trainers.evaluate: validation metrics of saved weights equal what the training run logged for them.

A tiny prior and a tiny RM0 (configs/training/tiny/) are trained for two steps on real faces; the
evaluation of the step-2 checkpoint must reproduce the run's own ``[val_ema]`` line, an exported EMA state
dict must score the same, and the raw (non-EMA) weights must score differently.
"""

from __future__ import annotations

import pytest
import torch

import main
from models.unet import UNetModel
from proc_helpers import logged_scalars, markdown_table
from trainers import evaluate
from trainers.diffusion import DiffusionTrainerConfig
from utils.config import load_config

DIFFUSION_TINY = "configs/training/tiny/diffusion_tiny.yaml"
SWINIR_TINY = "configs/training/tiny/swinir_tiny.yaml"


@pytest.fixture
def single_process(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("cfg", [DIFFUSION_TINY, SWINIR_TINY])
def test_evaluate_reproduces_the_logged_validation(cfg, tmp_path, faces_hq_dir, capsys, single_process):
    val_list = faces_hq_dir / "celeba128_val.txt"
    data = [f"data.train.source={val_list}", f"data.val.source={val_list}"]
    run = tmp_path / "run"
    assert (
        main.main(
            [
                "--cfg_path",
                cfg,
                "--save_dir",
                str(run),
                *data,
                "train.iterations=2",
                "train.val_freq=2",
                "train.log_sample_paths=false",
                "train.ema_rate=0.5",
            ]
        )
        == 0
    )
    logged = logged_scalars(capsys.readouterr().out, "val_ema", 2)

    ckpt = torch.load(run / "ckpt_0000002.pth", map_location="cpu", weights_only=True)
    torch.save(ckpt["ema"], tmp_path / "ema.pth")
    torch.save(ckpt["model"], tmp_path / "raw.pth")
    assert (
        evaluate.main(
            [
                "--cfg_path",
                cfg,
                "--ckpt",
                str(run / "ckpt_0000002.pth"),
                "ckpt",
                "--ckpt",
                str(tmp_path / "ema.pth"),
                "exported",
                "--ckpt",
                str(tmp_path / "raw.pth"),
                "raw",
                *data,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "| metric | ckpt | exported | raw |"
    table = markdown_table(out)
    assert set(table) == set(logged)
    for key, value in logged.items():
        from_ckpt, exported, _ = table[key]
        assert from_ckpt == pytest.approx(value, rel=1e-4, abs=1e-6), key  # the log prints 5 digits
        assert exported == from_ckpt, key
    assert any(row[2] != row[0] for row in table.values()), "raw weights scored like the EMA weights"


def test_evaluate_length_override_changes_the_faces(tmp_path, faces_hq_dir, capsys, single_process):
    val_list = faces_hq_dir / "celeba128_val.txt"
    model = tmp_path / "ema.pth"
    cfg = load_config(DIFFUSION_TINY, DiffusionTrainerConfig, [])
    torch.manual_seed(0)
    torch.save(UNetModel(**cfg.model.params).state_dict(), model)
    scores = []
    for length in (2, 4):
        assert (
            evaluate.main(
                [
                    "--cfg_path",
                    DIFFUSION_TINY,
                    "--ckpt",
                    str(model),
                    "m",
                    f"data.val.source={val_list}",
                    f"data.val.length={length}",
                ]
            )
            == 0
        )
        scores.append(markdown_table(capsys.readouterr().out)["loss"][0])
    assert scores[0] != scores[1]


@pytest.mark.parametrize(
    "args, needle",
    [(["--ckpt", "missing.pth", "m"], "missing.pth"), (["--ckpt", "x.pth", "m", "data.vall.length=3"], "vall")],
)
def test_bad_checkpoint_or_key_exit_2_one_line(args, needle, capsys, single_process):
    code = evaluate.main(["--cfg_path", DIFFUSION_TINY, *args])
    err = capsys.readouterr().err.strip()
    assert code == evaluate.EXIT_CONFIG_ERROR == 2
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
