"""The configs are one source of truth (dicts only; no network is built here).

* Every network of a sampling config (configs/sample/*.yaml) has the architecture of the training config
  that trains it: ``model`` (the diffusion prior), ``restorer`` (RM0), ``dblm.sde/tm/rm`` and ``dgsa``
  equal the ``model`` section of their training config, target and params, a parameter left out on one
  side counting as the class's default.
* The sampler's diffusion is the prior's training process up to the respacing, and the DSST table is
  built on the same noise schedule, step count and resolution.
* The DGSA training configs read their frozen parts from the right sampling config
  (trainers/dgsa.py ``sample_config``).
* Every YAML under configs/ loads with its schema: sample configs with sampler.load_sample_config,
  training configs (configs/training/, and configs/train/ for the DBLM scripts) with
  trainers.base.load_training_config, DSST build configs with models.dsst_build.DSSTBuildConfig,
  degradations with load_degradation_config.
  ``???`` (OmegaConf MISSING) is accepted only for the data paths the user must fill in.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import train_DBLM
import train_SDE
from data.degradation import load_degradation_config
from models.dsst_build import DSSTBuildConfig
from sampler import load_sample_config
from trainers.base import load_training_config, trainer_class
from trainers.dgsa import DGSATrainerConfig
from utils.config import get_obj_from_str, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# sampling config -> {section of the sampling config: training config whose `model` trains it}
SOURCES = {
    "configs/sample/dynfacerestore_ffhq512.yaml": {
        "model": "configs/training/diffusion_ffhq512.yaml",
        "restorer": "configs/training/swinir_ffhq512.yaml",
        "dblm.sde": "configs/train/train_SDE.yaml",
        "dblm.tm": "configs/train/train_DBLM_TM.yaml",
        "dblm.rm": "configs/train/train_DBLM_RM.yaml",
        "dgsa": "configs/training/uncertainty.yaml",
    },
    "configs/sample/dynfacerestore_demo.yaml": {
        "model": "configs/training/diffusion_demo64.yaml",
        "restorer": "configs/training/swinir_demo64.yaml",
        "dblm.sde": "configs/train/train_SDE_demo64.yaml",
        "dblm.tm": "configs/train/train_DBLM_TM_demo64.yaml",
        "dblm.rm": "configs/train/train_DBLM_RM_demo64.yaml",
        "dgsa": "configs/training/uncertainty_demo64.yaml",
    },
    # the public-weights recipe: no DBLM networks (dblm.kind: zero_shot)
    "configs/sample/dynfacerestore_ffhq512_public.yaml": {
        "model": "configs/training/diffusion_ffhq512.yaml",
        "restorer": "configs/training/swinir_ffhq512.yaml",
    },
    "configs/sample/dynfacerestore_demo_public.yaml": {
        "model": "configs/training/diffusion_demo64.yaml",
        "restorer": "configs/training/swinir_demo64.yaml",
        "dgsa": "configs/training/uncertainty_demo64.yaml",
    },
}
DSST_BUILD = {
    "configs/sample/dynfacerestore_ffhq512.yaml": "configs/dsst/ffhq512.yaml",
    "configs/sample/dynfacerestore_demo.yaml": "configs/dsst/demo64.yaml",
    "configs/sample/dynfacerestore_ffhq512_public.yaml": "configs/dsst/ffhq512.yaml",
    "configs/sample/dynfacerestore_demo_public.yaml": "configs/dsst/demo64.yaml",
}
DGSA_TRAINING = {
    "configs/training/uncertainty.yaml": "configs/sample/dynfacerestore_ffhq512.yaml",
    "configs/training/uncertainty_demo64.yaml": "configs/sample/dynfacerestore_demo.yaml",
}
# keys that may be '???' in a shipped config: data the user supplies, or the test-filled tiny sample config
ALLOWED_MISSING = {"data.train.source", "sample_config"}

ARCH_CASES = [(sample, section, train) for sample, sections in SOURCES.items() for section, train in sections.items()]


def _yaml(rel: str):
    return OmegaConf.load(REPO / rel)


def _architecture(node) -> tuple[str, dict]:
    """(target, params) with every parameter the target's signature defaults filled in."""
    node = OmegaConf.to_container(node, resolve=True)
    params = dict(node.get("params") or {})
    signature = inspect.signature(get_obj_from_str(node["target"]))
    for name, p in signature.parameters.items():
        if name not in params and p.default is not inspect.Parameter.empty:
            params[name] = p.default
    return node["target"], params


def _normalise(value):
    """Lists and tuples compare alike (signature defaults are often tuples)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("sample, section, train", ARCH_CASES, ids=[f"{Path(s).stem}:{k}" for s, k, _ in ARCH_CASES])
def test_sample_architecture_equals_training_model(sample, section, train):
    node = OmegaConf.select(_yaml(sample), section)
    assert node is not None, f"{sample}: no '{section}' section"
    trained = _yaml(train).model
    target, params = _architecture(node)
    train_target, train_params = _architecture(trained)
    assert target == train_target, f"{sample} {section}: {target} != {train} model {train_target}"
    params, train_params = _normalise(params), _normalise(train_params)
    differ = {
        k: (params.get(k), train_params.get(k))
        for k in set(params) | set(train_params)
        if params.get(k) != train_params.get(k)
    }
    assert not differ, f"{sample} {section} vs {train} model: differing params (sample, training) {differ}"
    assert node.get("ckpt_path"), f"{sample} {section}: no ckpt_path"


RM_ON_TM = [
    (
        "configs/train/train_DBLM_RM_demo64.yaml",
        "configs/train/train_DBLM_TM_demo64.yaml",
        "configs/sample/dynfacerestore_demo.yaml",
    )
]


@pytest.mark.parametrize("rm, tm, sample", RM_ON_TM)
def test_rm_trains_on_the_tm_that_is_shipped(rm, tm, sample):
    """The demo RM is trained on TM estimates (input: tm) of the TM its TM config trains and the sampler loads."""
    cfg = _yaml(rm)
    assert cfg.input == "tm"
    assert _normalise(_architecture(cfg.tm)) == _normalise(_architecture(_yaml(tm).model))
    assert cfg.tm.ckpt_path == _yaml(sample).dblm.tm.ckpt_path


WARM_STARTED = [
    (
        "configs/train/train_DBLM_TM_demo64.yaml",
        "configs/training/swinir_demo64.yaml",
        "configs/sample/dynfacerestore_demo.yaml",
    ),
    (
        "configs/train/train_DBLM_RM_demo64.yaml",
        "configs/training/swinir_demo64.yaml",
        "configs/sample/dynfacerestore_demo.yaml",
    ),
]


@pytest.mark.parametrize("dblm, restorer, sample", WARM_STARTED, ids=[Path(d).stem for d, _, _ in WARM_STARTED])
def test_warm_start_reads_the_shipped_restorer_of_the_same_backbone(dblm, restorer, sample):
    """TM / RM ``init`` is the RM0 the sampler ships, and their SwinIR is RM0's but for what the wrapper sets."""
    cfg = _yaml(dblm)
    assert cfg.init.ckpt_path == _yaml(sample).restorer.ckpt_path
    _, rm0 = _architecture(_yaml(restorer).model)
    _, backbone = _architecture(OmegaConf.create({"target": "models.swinir.SwinIR", "params": cfg.model.params.swinir}))
    wrapper_set = {"in_chans", "out_chans", "cond_channels", "global_residual"}
    differ = {
        k
        for k in set(rm0) | set(backbone)
        if k not in wrapper_set and _normalise(rm0.get(k)) != _normalise(backbone.get(k))
    }
    assert not differ, f"{dblm} backbone vs {restorer} model: differing params {sorted(differ)}"


def test_architecture_comparison_can_fail():
    """A drifted parameter and a default left out are told apart from an explicit default."""
    base = OmegaConf.create({"target": "models.dgsa.DGSA", "params": {"channel_mult": [1, 2, 2]}})
    explicit = OmegaConf.create({"target": "models.dgsa.DGSA", "params": {"channel_mult": [1, 2, 2], "b_ref": 0.05}})
    drifted = OmegaConf.create({"target": "models.dgsa.DGSA", "params": {"channel_mult": [1, 2, 2], "b_ref": 0.1}})
    assert _normalise(_architecture(base)) == _normalise(_architecture(explicit))
    assert _normalise(_architecture(base)) != _normalise(_architecture(drifted))


@pytest.mark.parametrize("sample", list(SOURCES))
def test_sampler_diffusion_is_the_priors_training_process(sample):
    """The respaced sampling process is the prior's training process (respacing aside)."""
    sampling = dict(_yaml(sample).diffusion.params)
    training = dict(_yaml(SOURCES[sample]["model"]).diffusion.params)
    assert _yaml(sample).diffusion.target == _yaml(SOURCES[sample]["model"]).diffusion.target
    assert sampling.pop("timestep_respacing") and not training.pop("timestep_respacing", "")
    assert sampling == training


@pytest.mark.parametrize("sample", list(DSST_BUILD))
def test_dsst_build_matches_sample_diffusion(sample):
    cfg = load_sample_config(REPO / sample)
    build = load_config(REPO / DSST_BUILD[sample], DSSTBuildConfig)
    assert build.noise_schedule == cfg.diffusion.params.noise_schedule
    assert build.num_steps == cfg.diffusion.params.steps
    assert build.resolution == cfg.resolution


@pytest.mark.parametrize("training, sample", list(DGSA_TRAINING.items()))
def test_dgsa_training_reads_its_sample_config(training, sample):
    cfg = load_config(REPO / training, DGSATrainerConfig)
    assert Path(cfg.sample_config) == Path(sample)
    assert cfg.data.train.resolution == load_sample_config(REPO / sample).resolution
    for key in ("diffusion", "prior", "dblm", "dsst"):  # no second copy of the frozen parts
        assert key not in _yaml(training), f"{training}: '{key}' belongs to {sample}"


def _shipped(folder: str) -> list[Path]:
    return sorted((CONFIGS / folder).rglob("*.yaml"))


def _missing_overrides(path: Path, schema) -> list[str]:
    """Placeholders for the '???' keys of ``path`` (only ALLOWED_MISSING may be missing)."""
    missing = set(OmegaConf.missing_keys(load_config(path, schema)))
    assert missing <= ALLOWED_MISSING, f"{path}: unexpected '???' keys {sorted(missing - ALLOWED_MISSING)}"
    return [f"{key}=placeholder/path" for key in sorted(missing)]


def test_every_config_has_a_loader():
    folders = {"sample", "training", "train", "dsst", "degradation", "presets"}
    every = sorted(CONFIGS.rglob("*.yaml"))
    assert every and all(p.relative_to(CONFIGS).parts[0] in folders for p in every), [
        str(p) for p in every if p.relative_to(CONFIGS).parts[0] not in folders
    ]


@pytest.mark.parametrize("path", _shipped("sample"), ids=lambda p: p.name)
def test_sample_configs_load(path):
    cfg = load_sample_config(path)
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize("path", _shipped("training") + _shipped("train"), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_training_configs_load_with_their_trainer_schema(path):
    """load_training_config rejects '???'; the user's data path is filled with a placeholder first. The
    configs of configs/train/ are those of the DBLM scripts."""
    targets = train_SDE.TARGETS + train_DBLM.TARGETS if path.relative_to(CONFIGS).parts[0] == "train" else None
    _, cfg = load_training_config(path, _missing_overrides(path, trainer_class(path).config_schema), targets)
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize("path", _shipped("dsst"), ids=lambda p: p.name)
def test_dsst_build_configs_load(path):
    assert not OmegaConf.missing_keys(load_config(path, DSSTBuildConfig))


@pytest.mark.parametrize("path", _shipped("degradation"), ids=lambda p: p.name)
def test_degradation_configs_load(path):
    load_degradation_config(path)


def test_step_presets_load():
    from inference.steps import PRESETS_FILE, presets

    assert _shipped("presets") == [REPO / PRESETS_FILE] and presets()["paper"] == {
        "steps": 250,
        "solver": "ddim",
        "reguide": False,
    }
