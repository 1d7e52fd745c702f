"""TrainerDGSA (trainers/dgsa.py) on the tiny setup of tests/tiny_setup.py (random-weight prior, SDE, TM, RM
at 32 px, DSST table from real faces), with real faces of ../shared/data:

* in process: only DGSA's parameters move; the frozen prior and DBLM stay bit-identical to their files;
* torchrun with 2 CPU ranks: checkpoints, resume with the same step counter, rank-disjoint data;
* learning signal: DGSA trained on pairs drawn from real training faces predicts a b whose rank
  correlation with the real error |x - x0_tilde| on held-out faces is positive (it is exactly 0 before
  training, when b is constant).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import main
from data.datasets import FaceDataset
from data.degradation import load_degradation_config
from models.dgsa import laplace_nll
from models.guidance import closed_form_guidance
from proc_helpers import evaluate_process, logged_scalars, paths_by_step, torchrun_main
from sampler import load_sample_config
from tiny_setup import make_tiny_setup
from trainers.dgsa import DGSATrainerConfig, GuidedPairSampler, TrainerDGSA, evaluate_rank_correlation
from utils.config import instantiate, load_config
from utils.distributed import DistInfo

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / "configs/training/tiny/uncertainty_tiny.yaml"
PER_RANK = 2  # train.batch[0] = 4 over 2 ranks


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, faces_hq_dir, celeba_faces) -> Path:
    """configs/training/tiny/uncertainty_tiny.yaml with sample_config = the sampling config of
    make_tiny_setup (the frozen networks) and absolute data paths, written to a temporary folder."""
    out = tmp_path_factory.mktemp("dgsa_tiny")
    cfg = OmegaConf.load(TINY_CONFIG)
    cfg.sample_config = str(make_tiny_setup(out, celeba_faces[:16]))
    cfg.data.train.source = str(faces_hq_dir / "celeba128_train.txt")
    cfg.data.val.source = str(faces_hq_dir / "celeba128_val.txt")
    path = out / "uncertainty_tiny.yaml"
    OmegaConf.save(cfg, path)
    return path


def _ckpt(save_dir: Path, step: int) -> dict:
    return torch.load(save_dir / f"ckpt_{step:07d}.pth", map_location="cpu", weights_only=True)


def test_only_dgsa_parameters_change(tiny_config, tmp_path, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    cfg = load_config(
        tiny_config,
        DGSATrainerConfig,
        ["train.iterations=2", "train.save_freq=1", "train.log_sample_paths=false", "data.val=null"],
    )
    trainer = TrainerDGSA(cfg, tmp_path, resume="none", dist_info=DistInfo(0, 1, 0, torch.device("cpu")))
    assert trainer.train() == 2
    pairs, sample = trainer.pairs, load_sample_config(cfg.sample_config)
    frozen = {"prior": (pairs.prior, sample.model.ckpt_path)}
    frozen.update({name: (getattr(pairs.dblm, name), sample.dblm[name].ckpt_path) for name in ("sde", "tm", "rm")})
    for name, (net, path) in frozen.items():
        assert not net.training and not any(p.requires_grad for p in net.parameters()), name
        on_disk = torch.load(path, map_location="cpu", weights_only=True)
        for key, value in net.state_dict().items():
            if key in on_disk:
                assert torch.equal(value, on_disk[key]), f"frozen {name}.{key} changed"
    first, second = _ckpt(tmp_path, 1), _ckpt(tmp_path, 2)
    assert any(not torch.equal(v, first["model"][k]) for k, v in second["model"].items()), "DGSA did not move"
    # the optimiser holds exactly DGSA's parameters
    n_dgsa = sum(1 for _ in instantiate(cfg.model).parameters())
    assert len(second["optimizer"]["state"]) == n_dgsa
    assert set(second["model"]) == set(instantiate(cfg.model).state_dict())


@pytest.mark.slow
def test_torchrun_checkpoints_resume_and_disjoint_ranks(tiny_config, tmp_path):
    save = tmp_path / "dgsa"
    first = torchrun_main(tiny_config, save, "train.iterations=2", "data.val.length=2", "train.batch=[4,1]")
    assert "resuming" not in first.stdout and "[val] step 2:" in first.stdout and "spearman=" in first.stdout
    assert sorted(p.name for p in save.glob("ckpt_*.pth")) == ["ckpt_0000002.pth"]
    ckpt = _ckpt(save, 2)
    assert ckpt["step"] == 2 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # ranks drew different noise
    # one process scores the EMA weights as the 2-rank run's validation did (same faces, same draws)
    logged = logged_scalars(first.stdout, "val_ema", 2)
    scored = evaluate_process(tiny_config, save / "ckpt_0000002.pth", "data.val.length=2", "train.batch=[4,1]")
    assert scored == pytest.approx(logged, rel=1e-4, abs=1e-6)

    second = torchrun_main(tiny_config, save, "train.iterations=3", "data.val.length=2", "train.batch=[4,1]")
    assert f"resuming from {save / 'ckpt_0000002.pth'} at step 2" in second.stdout
    assert "training finished at step 3" in second.stdout and _ckpt(save, 3)["step"] == 3
    seen = []
    for rank in range(2):
        by_step = paths_by_step(save, rank)
        assert sorted(by_step) == [1, 2, 3]  # the step counter continued at 3
        assert all(len(paths) == PER_RANK for paths in by_step.values())
        seen.append({p for paths in by_step.values() for p in paths})
    # 16 faces, 2 ranks x 2 per step: steps 1-3 lie in the first epoch, so the ranks' faces are disjoint
    assert not seen[0] & seen[1], "ranks saw the same faces"
    assert len(seen[0] | seen[1]) == 12


@pytest.mark.slow
def test_trained_dgsa_rank_correlation_is_positive(tiny_config, celeba_faces):
    """Pairs from 32 real training faces (the trainer's own draw), 120 Adam steps on the Laplace NLL, then
    the Spearman correlation of b with |x - x0_tilde| on 8 held-out faces (fresh degradations and draws)."""
    cfg = load_config(tiny_config, DGSATrainerConfig, ["model.params.channel_mult=[1]"])  # one level: fast
    pairs = GuidedPairSampler.from_config(cfg)
    faces = FaceDataset(
        celeba_faces[:32], resolution=32, seed=0, degradation=load_degradation_config(REPO_ROOT / cfg.degradation)
    )
    gen = torch.Generator().manual_seed(0)
    pool = []
    for start in range(0, 32, 8):
        items = [faces[i] for i in range(start, start + 8)]
        pool.append(
            pairs.draw(torch.stack([it["hq"] for it in items]), torch.stack([it["lq"] for it in items]), generator=gen)
        )
    data = {k: torch.cat([getattr(p, k) for p in pool]) for k in ("x", "x0_hat", "x0_tilde", "y_k", "t")}

    torch.manual_seed(0)
    dgsa = instantiate(cfg.model)
    before = evaluate_rank_correlation(cfg, dgsa, num_images=8, pairs=pairs)
    assert before["spearman"] == 0.0  # constant b at initialisation
    optimiser = torch.optim.Adam(dgsa.parameters(), lr=1e-3)
    for _ in range(120):
        idx = torch.randint(0, 32, (4,), generator=gen)
        b = dgsa(data["x0_hat"][idx], data["x0_tilde"][idx], data["y_k"][idx], data["t"][idx])
        loss = laplace_nll(data["x"][idx] - data["x0_tilde"][idx], b)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = evaluate_rank_correlation(cfg, dgsa, num_images=8, pairs=pairs)
    print(
        f"held-out Spearman(b, |x - x0_tilde|): pooled {after['spearman']:.3f}, "
        f"per image {after['spearman_per_image']:.3f}; NLL {before['nll']:.3f} -> {after['nll']:.3f}"
    )
    assert after["spearman"] > 0.2 and after["spearman_per_image"] > 0.2
    assert after["nll"] < before["nll"]


@pytest.mark.parametrize(
    "sample_override, override, named",
    [
        ("model.ckpt_path=missing_prior.pth", None, "missing_prior.pth"),
        ("dblm.tm.ckpt_path=missing_tm.pth", None, "missing_tm.pth"),
        ("dsst.table_path=missing_dsst.json", None, "missing_dsst.json"),
        ("sampler.guidance.lam=0", None, "sampler.guidance.lam"),
        ("sampler.guidance.combine=all", None, "sampler.guidance.combine"),
        (None, "sample_config=missing_sample.yaml", "missing_sample.yaml"),
        (None, "data.train.resolution=64", "data.train.resolution"),
        (None, "pairs.p_from_blur=1.5", "pairs.p_from_blur"),
    ],
)
def test_bad_frozen_part_exit_2_one_line(tiny_config, tmp_path, capsys, monkeypatch, sample_override, override, named):
    """A bad frozen part (in a copy of the sample config) or trainer key: exit 2, one line naming it."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    if sample_override is not None:
        sample = OmegaConf.merge(
            OmegaConf.load(OmegaConf.load(tiny_config).sample_config), OmegaConf.from_dotlist([sample_override])
        )
        OmegaConf.save(sample, tmp_path / "bad_sample.yaml")
        override = f"sample_config={tmp_path / 'bad_sample.yaml'}"
    code = main.main(["--cfg_path", str(tiny_config), "--save_dir", str(tmp_path / "run"), override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and named in err and "Traceback" not in err, err


@pytest.mark.parametrize("path", ["configs/training/uncertainty.yaml", "configs/training/uncertainty_demo64.yaml"])
def test_shipped_configs_validate(path):
    cfg = load_config(REPO_ROOT / path, DGSATrainerConfig)
    assert cfg.trainer.target == "trainers.dgsa.TrainerDGSA"
    dgsa = instantiate(cfg.model)
    assert cfg.data.train.resolution % dgsa.down_factor == 0
    sample = load_sample_config(REPO_ROOT / cfg.sample_config)
    assert sample.resolution == cfg.data.train.resolution and sample.dblm is not None and sample.dsst is not None
    assert cfg.train.batch[0] > 0 and sample.sampler.guidance.lam > 0 and 0 <= cfg.pairs.p_from_blur <= 1


def test_pair_draw_respects_level_activation(tiny_config, celeba_val_faces):
    """Brute force over the respaced schedule: level 1 is drawn up to the sampler's start index, level k >= 2
    only at steps whose original t <= t_k; x0_tilde is the closed form of x0_hat; a seed fixes the draw."""
    cfg = load_config(tiny_config, DGSATrainerConfig, ["pairs.p_from_blur=0.5"])
    pairs = GuidedPairSampler.from_config(cfg)
    tmap = pairs.timestep_map.tolist()
    t_level = torch.tensor([0, 3, 40, 41, 500, 999, 0, 40, 41, 999])
    level = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2, 1, 2])
    expected = [
        min([i for i, s in enumerate(tmap) if s >= t] or [len(tmap) - 1])
        if k == 0
        else max(i for i, s in enumerate(tmap) if s <= t)
        for t, k in zip(t_level.tolist(), level.tolist())
    ]
    assert pairs.max_index(t_level, level).tolist() == expected

    faces = FaceDataset(
        celeba_val_faces[:8],
        resolution=32,
        seed=3,
        flip=False,
        degradation=load_degradation_config(REPO_ROOT / cfg.degradation),
    )
    hq = torch.stack([faces[i]["hq"] for i in range(8)])
    lq = torch.stack([faces[i]["lq"] for i in range(8)])
    pair = pairs.draw(hq, lq, generator=torch.Generator().manual_seed(5))
    again = pairs.draw(hq, lq, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pair.x0_tilde, again.x0_tilde) and torch.equal(pair.t, again.t)
    levels = pairs.dblm(lq)
    t_k = pairs.dsst.start_step(pair.sigma_k, resolution=32)
    assert torch.equal(pair.sigma_k, levels.sigmas[torch.arange(8), pair.level])
    assert torch.all(pair.index <= pairs.max_index(t_k, pair.level))
    assert torch.all((pair.t <= t_k) | (pair.level == 0))
    assert torch.equal(pair.t, pairs.timestep_map[pair.index])
    lam = load_sample_config(cfg.sample_config).sampler.guidance.lam
    assert pairs.lam == lam and pairs.clip_denoised == load_sample_config(cfg.sample_config).sampler.clip_denoised
    torch.testing.assert_close(pair.x0_tilde, closed_form_guidance(pair.x0_hat, pair.y_k, pair.sigma_k, lam))
    assert pair.x0_hat.abs().max() <= 1.0 and pair.x0_tilde.shape == hq.shape
