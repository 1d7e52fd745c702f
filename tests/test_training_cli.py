"""The training scripts' command lines and run folders: ``main.py``, ``train_SDE.py`` and ``train_DBLM.py``
(one loop, trainers/base.py) refuse bad options, configs and folders with one line, and resume and log
consistently. In-process runs of the tiny configs on real faces; multi-rank validation is tested in
tests/test_trainers_torchrun.py and tests/test_dgsa_training.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main
import train_SDE
from proc_helpers import DIST_ENV
from trainers import cli
from trainers.base import load_training_config
from utils.config import ConfigError, instantiate, load_config
from utils.distributed import DistInfo
from utils.train_log import TrainLogger

REPO = Path(__file__).resolve().parents[1]
DIFFUSION_TINY = "configs/training/tiny/diffusion_tiny.yaml"
SDE_TINY = REPO / "configs" / "train" / "tiny" / "train_SDE_tiny.yaml"
TM_TINY = REPO / "configs" / "train" / "tiny" / "train_DBLM_TM_tiny.yaml"
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


@pytest.fixture
def single_process(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)


def _main_data(faces_hq_dir: Path) -> list:
    val_list = faces_hq_dir / "celeba128_val.txt"
    return [f"data.train.source={val_list}", f"data.val.source={val_list}", "train.log_sample_paths=false"]


def _dblm_data(faces_hq_dir: Path) -> list:
    return [
        f"data.train.source={faces_hq_dir / 'celeba128_train.txt'}",
        f"data.val.source={faces_hq_dir / 'celeba128_val.txt'}",
    ]


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    return dict(env, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ 1. a fresh run into a used folder
def test_fresh_run_into_a_used_folder_is_refused_torchrun(tmp_path, faces_hq_dir, capsys, single_process):
    """A folder with the checkpoints of steps 2 and 4, then ``--resume none`` for 2 steps: refused, so the run
    cannot rotate away its own step-2 checkpoint while keeping the old step 4.
    (An explicit ``--resume PATH`` is honoured: tests/test_checkpoint_recovery.py.)"""
    run = tmp_path / "run"
    data = _main_data(faces_hq_dir)
    assert (
        main.main(
            [
                "--cfg_path",
                DIFFUSION_TINY,
                "--save_dir",
                str(run),
                *data,
                "train.iterations=4",
                "train.save_freq=2",
                "train.val_freq=100",
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in run.glob("ckpt_*.pth")}
    assert sorted(before) == ["ckpt_0000002.pth", "ckpt_0000004.pth"]
    capsys.readouterr()
    assert (
        main.main(
            [
                "--cfg_path",
                DIFFUSION_TINY,
                "--save_dir",
                str(run),
                "--resume",
                "none",
                *data,
                "train.iterations=4",
                "train.save_freq=2",
                "train.keep_checkpoints=1",
            ]
        )
        == 2
    )
    err = _one_error_line(capsys)
    assert "4]" in err and "--resume auto" in err
    assert {p.name: p.read_bytes() for p in run.glob("ckpt_*.pth")} == before
    # resuming into another folder from the step-2 checkpoint is fine: nothing newer there
    other = tmp_path / "other"
    assert (
        main.main(
            [
                "--cfg_path",
                DIFFUSION_TINY,
                "--save_dir",
                str(other),
                "--resume",
                str(run / "ckpt_0000002.pth"),
                *data,
                "train.iterations=3",
                "train.val_freq=100",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in other.glob("ckpt_*.pth")) == ["ckpt_0000003.pth"]


def test_fresh_run_into_a_used_folder_is_refused_accelerate(tmp_path, faces_hq_dir, capsys, single_process):
    """The DBLM scripts refuse the same folder, keeping its checkpoints and ema_final.pth."""
    save = tmp_path / "sde"
    args = [
        "--config",
        str(SDE_TINY),
        "--save_dir",
        str(save),
        "train.val_freq=100",
        "train.amp=bf16",
        *_dblm_data(faces_hq_dir),
    ]
    assert train_SDE.main(args) == 0
    # the run says which precision it uses (accelerate launch announces its own default, 'no')
    assert "mixed precision: bf16 (train.amp: bf16)" in capsys.readouterr().out
    ema = (save / "ema_final.pth").read_bytes()
    steps = sorted(p.name for p in (save / "checkpoints").iterdir())
    capsys.readouterr()
    assert train_SDE.main(args + ["--resume", "none", "train.iterations=1"]) == 2
    err = _one_error_line(capsys)
    assert err.startswith("train_SDE.py: error:") and "--resume auto" in err
    assert (save / "ema_final.pth").read_bytes() == ema
    assert sorted(p.name for p in (save / "checkpoints").iterdir()) == steps


# ------------------------------------------------------------------ 4. overrides before an option
def test_overrides_may_come_before_the_options():
    args = cli.parse_args(
        main.build_parser(),
        ["--cfg_path", "c.yaml", "train.iterations=1", "--save_dir", "d", "--resume", "none", "train.seed=3"],
    )
    assert args.overrides == ["train.iterations=1", "train.seed=3"] and args.resume == "none"
    args = cli.parse_args(
        train_SDE.build_parser(), ["--config", "c.yaml", "data.val=null", "--save_dir", "X", "train.iterations=1"]
    )
    assert args.overrides == ["data.val=null", "train.iterations=1"] and args.save_dir == "X"


# ------------------------------------------------------------------ one train: schema, one set of flags
TASK_MOVED = "'task' moved to 'trainer.target (trainers.sde.TrainerSDE, trainers.transform.TrainerTM or TrainerRM)'"
OLD_DIALECT_SDE = """
task: sde
save_dir: runs/sde
model: {target: DiffBIR.sde.SigmaEstimator, params: {channels: [8, 16]}}
data: {train: faces.txt, val: faces.txt, resolution: 32, degradation: configs/degradation/demo64.yaml}
train: {iterations: 2}
"""


@pytest.mark.parametrize(
    "override, moved",
    [
        ("task=sde", TASK_MOVED),
        ("save_dir=runs/x", "'save_dir' moved to 'the command's --save_dir'"),
        ("data.degradation=configs/degradation/demo64.yaml", "'data.degradation' moved to 'degradation (top level)'"),
        ("data.val_size=3", "'data.val_size' moved to 'data.val.length'"),
        ("data.val_seed=3", "'data.val_seed' moved to 'data.val.seed'"),
        ("data.resolution=64", "'data.resolution' moved to 'data.train.resolution and data.val.resolution'"),
        ("data.train=faces.txt", "'data.train' (a path) moved to 'data.train.source'"),
    ],
)
@pytest.mark.parametrize("config", [SDE_TINY, REPO / DIFFUSION_TINY])
def test_a_key_of_the_old_dblm_dialect_is_refused_naming_where_it_moved(config, override, moved):
    with pytest.raises(ConfigError) as err:
        load_training_config(config, [override])
    assert str(err.value) == f"{config}: {moved}"


@pytest.mark.parametrize("script", [main, train_SDE])
def test_an_old_dialect_config_is_one_line(tmp_path, capsys, script, single_process):
    config = tmp_path / "old.yaml"
    config.write_text(OLD_DIALECT_SDE)
    assert script.main(["--config", str(config), "--save_dir", str(tmp_path / "run")]) == 2
    prog = script.build_parser().prog
    assert _one_error_line(capsys) == f"{prog}: error: {config}: {TASK_MOVED}"
    assert not (tmp_path / "run").exists()


def test_a_script_refuses_another_networks_trainer(capsys, tmp_path, single_process):
    assert train_SDE.main(["--config", str(TM_TINY), "--save_dir", str(tmp_path / "run")]) == 2
    assert _one_error_line(capsys) == (
        f"train_SDE.py: error: {TM_TINY}: trainer.target must be one of ['trainers."
        "sde.TrainerSDE'] for this script, got 'trainers.transform.TrainerTM'"
    )


def test_both_launchers_take_the_same_flags():
    flags = ["--config", "c.yaml", "--save_dir", "d", "--resume", "none", "--seed", "3", "train.iterations=1"]
    for parser in (main.build_parser(), train_SDE.build_parser()):
        args = cli.parse_args(parser, flags)
        assert (args.config, args.save_dir, args.resume, args.seed) == ("c.yaml", "d", "none", 3)
        assert args.overrides == ["train.iterations=1", "train.seed=3"]
        assert cli.parse_args(parser, ["--cfg_path", "c.yaml", "--save_dir", "d"]).config == "c.yaml"
        assert cli.parse_args(parser, ["--config", "configs/x/c.yaml"]).save_dir == str(Path("experiments") / "c")


def test_batch_is_the_total_over_processes():
    """train.batch[0] is split over the processes by the check both loops use (utils.train_schema)."""
    from utils.train_schema import check_train

    _, cfg = load_training_config(SDE_TINY, ["train.batch=[6,2]"])
    assert check_train(cfg.train, 2) == (3, 3) and check_train(cfg.train, 3) == (2, 2)
    with pytest.raises(ConfigError, match=r"train.batch\[0\]=6 \(total over processes\) is not divisible by 4"):
        check_train(cfg.train, 4)


# ------------------------------------------------------------------ 5. 'no' read as a boolean
def test_no_is_a_word_in_overrides():
    _, cfg = load_training_config(SDE_TINY, ["loss=l2", "data.train.flip=no"])
    assert cfg.data.train.flip is False  # a boolean key still reads the word as a boolean
    with pytest.raises(ConfigError, match=r"train.amp must be one of \['none', 'bf16', 'fp16'\], got 'no'"):
        load_training_config(SDE_TINY, ["train.amp=no"])
    raw = load_config(DIFFUSION_TINY, overrides=["train.amp=no", "data.val.flip=off"])
    assert raw.train.amp == "no" and raw.data.val.flip == "off"


# ------------------------------------------------------------------ 6. model.ckpt_path for DBLM
@pytest.mark.parametrize("config", [SDE_TINY, TM_TINY])
def test_dblm_model_ckpt_path_loads_the_weights(tmp_path, config):
    _, cfg = load_training_config(config)
    torch.manual_seed(123)
    weights = instantiate(cfg.model).state_dict()
    torch.save(weights, tmp_path / "w.pth")
    cls, cfg = load_training_config(config, [f"model.ckpt_path={tmp_path / 'w.pth'}"])
    torch.manual_seed(0)
    built = cls(cfg, tmp_path, dist_info=CPU).build_model().state_dict()
    assert all(torch.equal(built[k], v) for k, v in weights.items())


# ------------------------------------------------------------------ 7. raw YAML tracebacks
@pytest.mark.parametrize("launcher", ["main.py", "train_SDE.py"])
@pytest.mark.parametrize("bad", ["file", "override"])
def test_malformed_yaml_exits_2_with_one_line(tmp_path, capsys, launcher, bad, single_process):
    source = REPO / (DIFFUSION_TINY if launcher == "main.py" else SDE_TINY)
    config = tmp_path / "c.yaml"
    shutil.copy(source, config)
    override = "model.params.depths=[6,6"
    if bad == "file":
        config.write_text(config.read_text() + "\nbroken: [1, 2\n")
    script = main if launcher == "main.py" else train_SDE
    code = script.main(
        ["--cfg_path", str(config), "--save_dir", str(tmp_path / "run")] + ([override] if bad == "override" else [])
    )
    assert code == 2
    err = _one_error_line(capsys)
    assert (override in err) if bad == "override" else ("not valid YAML" in err and "line" in err)


def test_override_without_equals_is_named():
    with pytest.raises(ConfigError, match="'train.iterations' is not of the form key=value"):
        load_config(DIFFUSION_TINY, overrides=["train.iterations"])


# ------------------------------------------------------------------ 8. repeated tensorboard steps
def test_resumed_logger_purges_the_steps_after_its_checkpoint(tmp_path):
    """Interrupted at step 5 after the checkpoint of step 3: the resumed run logs 4 and 5 again."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TrainLogger(tmp_path, total_steps=6, start_step=0)
    for step in range(1, 6):
        first.step(step, {"loss": float(step)})
    first.close()
    resumed = TrainLogger(tmp_path, total_steps=6, start_step=3)
    for step in range(4, 7):
        resumed.step(step, {"loss": 10.0 * step})
    resumed.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted((e.step, e.value) for e in acc.Scalars("train/loss"))
    assert events == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]


# ------------------------------------------------------------------ 10. launcher noise
@pytest.mark.slow
def test_config_error_is_printed_once_under_torchrun(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "main.py",
            "--cfg_path",
            DIFFUSION_TINY,
            "--save_dir",
            str(tmp_path),
            "train.bach=3",
        ],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert [line for line in proc.stderr.splitlines() if line.startswith("main.py: error:")] == [
        next(line for line in proc.stderr.splitlines() if "train.bach" in line)
    ]


@pytest.mark.slow
def test_accelerate_cpu_launch_of_two_processes_is_refused(tmp_path):
    """``accelerate launch --cpu --num_processes 2`` (which starts one process) is refused with one line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--cpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "train_SDE.py",
            "--config",
            str(SDE_TINY),
            "--save_dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "train_SDE.py: error: accelerate launch started one process" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_quiet_accelerate_launch_leaves_the_one_line(tmp_path):
    """Under ``accelerate launch -q`` a bad config is the script's one line: no CalledProcessError trace."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "-q",
            "--cpu",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "train_SDE.py",
            "--config",
            str(SDE_TINY),
            "--save_dir",
            str(tmp_path),
            "train.bach=3",
        ],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert [line for line in proc.stderr.splitlines() if "error" in line.lower()] == [
        next(
            line
            for line in proc.stderr.splitlines()
            if line.startswith("train_SDE.py: error:") and "train.bach" in line
        )
    ]
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr


# ------------------------------------------------------------------ 11. unclear messages
def test_bad_data_train_path_names_data_train(tmp_path):
    cls, cfg = load_training_config(SDE_TINY, [f"data.train.source={tmp_path / 'absent.txt'}"])
    with pytest.raises(ConfigError) as err:
        cls(cfg, tmp_path, dist_info=CPU).build_dataset("train")
    assert str(err.value).startswith("data.train.source:") and "degradation" not in str(err.value)
    assert str(err.value).endswith("give it as data.train.source=FOLDER (a key=value argument of the command)")


def test_dblm_splits_are_seeded_by_their_seed_else_train_seed(faces_hq_dir, tmp_path):
    """The DBLM datasets are the FaceDatasets of the former data.train_seed / data.val_seed keys: the val split
    by its data.val.seed, the train split by train.seed."""
    from data.datasets import FaceDataset

    data = _dblm_data(faces_hq_dir)
    cls, cfg = load_training_config(SDE_TINY, [*data, "train.seed=7"])
    trainer = cls(cfg, tmp_path, dist_info=CPU)
    degradation = REPO / "configs" / "degradation" / "demo64.yaml"
    expected = {
        "train": FaceDataset(
            faces_hq_dir / "celeba128_train.txt", 32, flip=True, degradation=degradation, seed=7, with_sigma_star=True
        ),
        "val": FaceDataset(
            faces_hq_dir / "celeba128_val.txt",
            32,
            flip=False,
            degradation=degradation,
            seed=1234,
            with_sigma_star=True,
            length=4,
        ),
    }
    for split, reference in expected.items():
        built = trainer.build_dataset(split)
        assert len(built) == len(reference)
        for i in (0, 3):
            a, b = built[i], reference[i]
            assert a["path"] == b["path"] and torch.equal(a["lq"], b["lq"]) and torch.equal(a["hq"], b["hq"])
            assert torch.equal(a["sigma_star"], b["sigma_star"])


def test_resume_after_a_model_change_says_what_does_not_fit(tmp_path, faces_hq_dir, capsys, single_process):
    """The error names the parameters that do not fit, not only "Error(s) in loading state_dict"."""
    args = ["--config", str(SDE_TINY), "--save_dir", str(tmp_path), "train.val_freq=100", *_dblm_data(faces_hq_dir)]
    assert train_SDE.main(args) == 0
    capsys.readouterr()
    assert train_SDE.main(args + ["train.iterations=4", "model.params.channels=[8,32]"]) == 2
    err = _one_error_line(capsys)
    assert "ckpt_0000002.pth" in err and "does not fit SigmaEstimator" in err and "shape mismatch" in err


# ------------------------------------------------------------------ the README's training section
def _option_strings(parser) -> set:
    return {s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")}


def test_readme_training_section_matches_the_flags():
    """Every option of main.py, train_SDE.py and train_DBLM.py is in the README's training section, and
    every option its commands give those scripts exists (torchrun's own --nproc_per_node aside)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Training")
    section = readme[start : readme.index("\n## ", start + 1)]
    flags = re.compile(r"(?<![\w-])(--[a-z_]+)")
    accepted = _option_strings(main.build_parser()) | _option_strings(train_SDE.build_parser())
    assert accepted <= set(flags.findall(section)), accepted - set(flags.findall(section))
    assert "python -m utils.export_weights" in section and "python -m trainers.dgsa_eval" in section
    code = "\n".join(section.split("```")[1::2])
    commands = [line for line in code.splitlines() if re.search(r"(main|train_SDE|train_DBLM)\.py ", line)]
    assert len(commands) == 6
    used = set(flags.findall("\n".join(commands)))
    assert used - accepted == {"--nproc_per_node"}
