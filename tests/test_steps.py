"""``--steps`` / ``--solver`` (inference/steps.py): the respacing they set, DifFace's start kept at its
timestep, and the command line on a real face with the demo models."""

from __future__ import annotations

import json

import pytest

from inference.runner import main
from inference.steps import fixed_start_t, steps_overrides
from models.respace import space_timesteps
from sampler import load_sample_config
from utils.model_factory import resolve_path

DEMO = resolve_path("configs/sample/dynfacerestore_demo.yaml")


@pytest.mark.parametrize("steps, start_t", [(250, 400), (100, 400), (25, 400), (12, 420), (10, 400), (7, 429)])
def test_difface_start_stays_at_the_first_timestep_from_400(steps, start_t):
    overrides = steps_overrides(DEMO, ["sampler.method=difface"], steps, "dpmpp_2m")
    cfg = load_sample_config(DEMO, overrides)
    kept = sorted(space_timesteps(1000, cfg.diffusion.params.timestep_respacing))
    assert len(kept) == steps and cfg.sampler.solver == "dpmpp_2m"
    assert fixed_start_t(cfg) == start_t == min(t for t in kept if t >= 400)
    assert kept[cfg.sampler.fixed_start_index - 1] < 400 <= kept[cfg.sampler.fixed_start_index]


def test_no_flags_keep_the_config():
    assert steps_overrides(DEMO, ["a=1"]) == ["a=1"]
    assert fixed_start_t(load_sample_config(DEMO)) == 400


def test_command_line_steps_and_solver_on_a_real_face(real_lq_dir, tmp_path):
    face = real_lq_dir / "wider_like" / "0143.png"
    runs = {}
    for method in ("difface", "dynfacerestore"):
        out = tmp_path / method
        assert (
            main(
                [
                    "-i",
                    str(face),
                    "-o",
                    str(out),
                    "--aligned",
                    "--config",
                    str(DEMO),
                    "--method",
                    method,
                    "--steps",
                    "12",
                    "--solver",
                    "dpmpp_2m",
                ]
            )
            == 0
        )
        runs[method] = json.loads(next((out / "records").glob("*.json")).read_text())
    assert runs["difface"]["start_t"] == 420 and runs["difface"]["nfe"] == 6
    dyn = runs["dynfacerestore"]
    assert dyn["start_t"] % 84 == 0 and dyn["nfe"] == dyn["start_index"] + 1 <= 12
    assert "sampler.solver=dpmpp_2m" in dyn["overrides"]


def test_paper_preset_is_250_steps_of_ddim(real_lq_dir, tmp_path):
    face = real_lq_dir / "wider_like" / "0143.png"
    out = tmp_path / "paper"
    assert (
        main(
            [
                "-i",
                str(face),
                "-o",
                str(out),
                "--aligned",
                "--config",
                str(DEMO),
                "--preset",
                "paper",
                "--method",
                "difface",
            ]
        )
        == 0
    )
    record = json.loads(next((out / "records").glob("*.json")).read_text())
    assert record["start_index"] == 100 and record["start_t"] == 400 and record["nfe"] == 101
    assert record["overrides"][-4:] == [
        "diffusion.params.timestep_respacing=ddim250",
        "sampler.fixed_start_index=100",
        "sampler.solver=ddim",
        "sampler.guidance.reguide=false",
    ]
