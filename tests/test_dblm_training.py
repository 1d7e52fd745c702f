"""train_SDE.py / train_DBLM.py as real `accelerate launch` processes (2 CPU processes, gloo) on real faces.

Tiny configs (configs/train/tiny/, 32 px, 2-4 steps). accelerate launches several CPU processes only
through its multi-process launcher (``--multi_gpu``; with ``--cpu`` it starts one process); the
training loop joins their process group itself (gloo when CUDA is absent).
Exact resumption (a 2 + 2 step run equals a 4 step run bit for bit) is checked in-process, which is
cheaper than two more launches and exercises the same code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "train" / "tiny"
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def data_overrides(faces_hq_dir: Path) -> list:
    return [
        f"data.train.source={faces_hq_dir / 'celeba128_train.txt'}",
        f"data.val.source={faces_hq_dir / 'celeba128_val.txt'}",
    ]


def launch(script: str, config: str, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = LAUNCH + [script, "--config", str(TINY / config), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def checkpoints(save_dir: Path) -> list:
    return sorted(p.name for p in (save_dir / "checkpoints").iterdir())


def ckpt(save_dir: Path, step: int) -> dict:
    return torch.load(save_dir / "checkpoints" / f"ckpt_{step:07d}.pth", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, faces_hq_dir):
    """Trains SDE (then resumes it), TM and RM (input: the TM's estimates) with 2 processes each."""
    root = tmp_path_factory.mktemp("dblm_runs")
    data = data_overrides(faces_hq_dir)
    out = {name: root / name for name in ("sde", "tm", "rm")}
    first = launch("train_SDE.py", "train_SDE_tiny.yaml", "--save_dir", str(out["sde"]), *data)
    assert checkpoints(out["sde"]) == ["ckpt_0000002.pth"]
    ema_2 = torch.load(out["sde"] / "ema_final.pth")
    second = launch("train_SDE.py", "train_SDE_tiny.yaml", "--save_dir", str(out["sde"]), "train.iterations=4", *data)
    launch("train_DBLM.py", "train_DBLM_TM_tiny.yaml", "--save_dir", str(out["tm"]), *data)
    rm = launch(
        "train_DBLM.py",
        "train_DBLM_RM_tiny.yaml",
        "--save_dir",
        str(out["rm"]),
        f"tm.ckpt_path={out['tm'] / 'ema_final.pth'}",
        *data,
    )
    return {"dirs": out, "sde_first": first, "sde_second": second, "sde_ema_2": ema_2, "rm": rm}


@pytest.mark.slow
def test_sde_two_processes_checkpoint_and_resume(runs):
    sde = runs["dirs"]["sde"]
    both = runs["sde_first"].stdout + runs["sde_first"].stderr
    assert "[val_ema] step 2: sigma_mae_px=" in both
    assert "resuming from" not in both
    again = runs["sde_second"].stdout + runs["sde_second"].stderr
    assert f"resuming from {sde / 'checkpoints' / 'ckpt_0000002.pth'} at step 2" in again
    assert "[train] step 3" in again and "[train] step 1:" not in again
    assert checkpoints(sde) == ["ckpt_0000002.pth", "ckpt_0000004.pth"]
    state = ckpt(sde, 4)
    assert state["step"] == 4 and len(state["rng"]) == 2 and {"model", "ema", "optimizer"} <= set(state)
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # the processes' own noise
    ema_4 = torch.load(sde / "ema_final.pth")
    assert ema_4.keys() == runs["sde_ema_2"].keys()
    assert any(not torch.equal(ema_4[k], runs["sde_ema_2"][k]) for k in ema_4)
    assert (sde / "tb").is_dir() and (sde / "config.yaml").is_file()


@pytest.mark.slow
def test_tm_rm_two_processes(runs):
    for name in ("tm", "rm"):
        d = runs["dirs"][name]
        assert checkpoints(d) == ["ckpt_0000002.pth"] and (d / "ema_final.pth").is_file()
    log = runs["rm"].stdout + runs["rm"].stderr
    assert "[val] step 2: psnr=" in log


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_one_loop_under_either_launcher(tmp_path, faces_hq_dir, launcher):
    """The scripts do not depend on their launcher: train_SDE.py under torchrun, main.py under
    accelerate launch, 2 CPU processes each (the usual pairs are tested above and in
    tests/test_trainers_torchrun.py)."""
    if launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "train_SDE.py",
            "--config",
            str(TINY / "train_SDE_tiny.yaml"),
            "--save_dir",
            str(tmp_path),
            *data_overrides(faces_hq_dir),
        ]
        written = tmp_path / "checkpoints" / "ckpt_0000002.pth"
    else:
        val = faces_hq_dir / "celeba128_val.txt"
        cmd = LAUNCH + [
            "main.py",
            "--cfg_path",
            "configs/training/tiny/swinir_tiny.yaml",
            "--save_dir",
            str(tmp_path),
            f"data.train.source={val}",
            f"data.val.source={val}",
            "train.iterations=2",
        ]
        written = tmp_path / "ckpt_0000002.pth"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout and "training finished at step 2" in proc.stdout
    assert len(torch.load(written, weights_only=True)["rng"]) == 2


@pytest.mark.slow
def test_dblm_from_trained_checkpoints(runs, faces_hq_dir):
    from omegaconf import OmegaConf

    from data.datasets import FaceDataset
    from DiffBIR.dblm import DBLM

    node = {"num_levels": 3, "rho": 0.75, "sigma_min_512": 0.5}
    for name, config in (
        ("sde", "train_SDE_tiny.yaml"),
        ("tm", "train_DBLM_TM_tiny.yaml"),
        ("rm", "train_DBLM_RM_tiny.yaml"),
    ):
        model = OmegaConf.load(TINY / config).model
        node[name] = {
            "target": model.target,
            "params": model.params,
            "ckpt_path": str(runs["dirs"][name] / "ema_final.pth"),
        }
    dblm = DBLM.from_config(OmegaConf.create(node))
    ds = FaceDataset(
        faces_hq_dir / "celeba128_val.txt",
        32,
        flip=False,
        degradation=REPO / "configs" / "degradation" / "demo64.yaml",
        seed=5,
    )
    y = torch.stack([ds[i]["lq"] for i in range(3)])
    out = dblm(y)
    assert out.sigma_hat.shape == (3,) and out.sigmas.shape == (3, 3)
    assert (out.sigmas[:, 1:] <= out.sigmas[:, :-1]).all()
    above = out.sigmas[:, 1:] > 0.5 * 32 / 512
    assert (out.sigmas[:, 1:][above] < out.sigmas[:, :-1][above]).all()
    assert len(out.images) == 3 and all(im.shape == y.shape for im in out.images)
    assert all(im.abs().max() <= 1 for im in out.images)


def tiny_restorer_weights(path: Path) -> Path:
    """A one-image global-residual SwinIR (RM0's form) of the tiny TM's backbone size, saved to ``path``."""
    from omegaconf import OmegaConf

    from models.swinir import SwinIR

    params = OmegaConf.to_container(OmegaConf.load(TINY / "train_DBLM_TM_tiny.yaml").model.params.swinir)
    torch.manual_seed(3)
    net = SwinIR(in_chans=3, global_residual=True, **params)
    torch.nn.init.normal_(net.conv_last.weight, std=0.05)
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("variant", ["constant", "cosine_bf16_warm_start"])
def test_resume_repeats_uninterrupted_run_exactly(tmp_path, faces_hq_dir, variant, monkeypatch):
    """In-process (one process): TM trained 4 steps == resumed at step 2 and trained to 4 (weights, EMA);
    also with the cosine schedule (a function of the step), bf16 autocast on the CPU and a warm start."""
    import train_DBLM

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    extra = []
    if variant != "constant":
        extra = [
            "train.lr_schedule=cosine",
            "train.warmup_iterations=1",
            "train.min_lr=1e-5",
            "train.amp=bf16",
            f"init.ckpt_path={tiny_restorer_weights(tmp_path / 'rm0.pth')}",
        ]

    def run(save_dir, resume="auto"):
        assert (
            train_DBLM.main(
                [
                    "--config",
                    str(TINY / "train_DBLM_TM_tiny.yaml"),
                    "--resume",
                    resume,
                    "--save_dir",
                    str(save_dir),
                    "train.iterations=4",
                    "train.val_freq=100",
                    *data_overrides(faces_hq_dir),
                    *extra,
                ]
            )
            == 0
        )
        return torch.load(save_dir / "ema_final.pth")

    straight = run(tmp_path / "a")  # checkpoints at steps 2 and 4
    # resumed from the straight run's step 2 (same iterations: the cosine schedule depends on it)
    resumed = run(tmp_path / "b", str(tmp_path / "a" / "checkpoints" / "ckpt_0000002.pth"))
    assert straight.keys() == resumed.keys()
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0)
    a, b = ckpt(tmp_path / "a", 4)["model"], ckpt(tmp_path / "b", 4)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_warm_started_task_model_is_the_restorer(tmp_path, faces_hq_dir):
    """The model training starts from (TrainerTM.build_model with ``init``) computes RM0's output."""
    from models.swinir import SwinIR
    from trainers.base import load_training_config
    from trainers.transform import TrainerTM
    from utils.distributed import DistInfo

    weights = tiny_restorer_weights(tmp_path / "rm0.pth")
    _, cfg = load_training_config(
        TINY / "train_DBLM_TM_tiny.yaml", [f"init.ckpt_path={weights}", *data_overrides(faces_hq_dir)]
    )
    tm = TrainerTM(cfg, tmp_path, dist_info=DistInfo(0, 1, 0, torch.device("cpu"))).build_model().eval()
    restorer = SwinIR(in_chans=3, global_residual=True, **cfg.model.params.swinir).eval()
    restorer.load_state_dict(torch.load(weights))
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tm(y, 1.3), restorer.restore(y, clamp=False), rtol=0, atol=1e-5)


def test_amp_bf16_runs_on_cpu_fp16_needs_cuda():
    from trainers.base import amp_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert amp_dtype("bf16", cpu) is torch.bfloat16 and amp_dtype("bf16", cuda) is torch.bfloat16
    assert amp_dtype("fp16", cpu) is None and amp_dtype("fp16", cuda) is torch.float16
    assert amp_dtype("none", cpu) is None and amp_dtype("none", cuda) is None


def test_missing_warm_start_weights_exit_2_with_one_line(tmp_path, capsys):
    import train_DBLM

    args = [
        "--config",
        str(TINY / "train_DBLM_TM_tiny.yaml"),
        "--save_dir",
        str(tmp_path),
        f"init.ckpt_path={tmp_path / 'absent.pth'}",
    ]
    assert train_DBLM.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint not found" in err and "init.ckpt_path" in err


def test_bad_config_key_exits_2_with_one_line(capsys, tmp_path):
    import train_SDE

    assert (
        train_SDE.main(["--config", str(TINY / "train_SDE_tiny.yaml"), "--save_dir", str(tmp_path), "train.bach=3"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.bach" in err and err.startswith("train_SDE.py: error:")
