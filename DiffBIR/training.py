"""The accelerate training loop shared by train_SDE.py and train_DBLM.py (docs/method.md sections 4 and 11).

One loop (:func:`train`) trains any of the three DBLM networks; what differs between them -- the
model, the loss and the validation metric -- lives in a small task class (:class:`SDETask`,
:class:`TMTask`, :class:`RMTask`) selected by the config's ``task`` key.

Data: ``data.datasets.FaceDataset`` with the blind degradation and the sigma* target
(``with_sigma_star=True``), drawn through ``utils.distributed.ShardedInfiniteSampler`` (rank-disjoint,
restarts exactly where a resumed run stopped). The loaders
have their own generators, so that the global RNG (restored on resume) is consumed by the losses only:
a resumed run repeats the uninterrupted one exactly (tests/test_dblm_training.py).

The ``train:`` section is the one every trainer reads (``utils.train_schema``): ``train.batch[0]``
samples per step in total, split over the processes, ``train.batch[1]`` the validation batch;
gradient accumulation (``train.microbatch``) and ``train.log_sample_paths`` are main.py's only.
Per step: the learning rate of ``utils.lr_schedule.lr_at`` (``train.lr``, ``warmup_iterations``,
``lr_schedule`` constant | cosine, ``min_lr``; a function of the step, so a resumed run continues it),
forward under ``accelerator.autocast`` (mixed precision ``train.amp``: fp16 on CUDA only, bf16 on CUDA
and CPU), AdamW, optional gradient-norm clipping, then the EMA of the
weights (``utils.ema.EMA``). Every ``train.val_freq`` steps the main process evaluates the EMA model
on the validation list (SDE: mean |sigma_hat - sigma*| in pixels; TM/RM: PSNR of the output against
the exact blurred target, in the convention of ``utils.metrics.psnr``); every ``train.save_freq``
steps a checkpoint directory ``<save_dir>/checkpoints/step_XXXXXXX`` is written with
``accelerator.save_state`` (model, optimiser, RNG states of every process, plus the EMA and the step
counter registered for checkpointing). Naming, the atomic write (every process fills
``step_XXXXXXX.partial``, the main process renames it when all are done), rotation (the last
``train.keep_checkpoints`` are kept) and ``--resume auto|none|DIR`` (``auto``, the default: the newest
complete checkpoint, if any) follow ``utils.run_checkpoints``, shared with the torchrun trainers.
``init`` (TM and RM) starts the backbone from a trained one-image restorer (RM0), see
``DiffBIR.transform.SigmaConditionedSwinIR.warm_start``; a resumed run takes its weights from the checkpoint.
Checkpoints store no config: resuming with a different model raises a clear error, other
changes (e.g. a larger ``train.iterations``) are taken as given. At the end
the EMA weights are exported as a plain state_dict, ``<save_dir>/ema_final.pth``, the file that
``DiffBIR.dblm.DBLM.from_config`` loads. Logging: ``utils.train_log.TrainLogger``.

Training-time sigma (TM, RM), our reading of "trained with sigma drawn around sigma*": the blur of
the TM target (and of the RM input level) is sigma = max(sigma* exp(u) + v, floor), u ~ U(-m, m),
v ~ U(0, offset), with m = ``sigma.log_margin``, offset and floor from ``sigma.offset_512`` and
``sigma.min_512`` (512-px units). The multiplicative jitter covers relative SDE errors, the additive
one keeps some spread when sigma* = 0 (a clean input), and the floor is DBLM's sigma floor. RM's
target is sigma' = max(r sigma, floor), r ~ U(rho_range); its input level is G_sigma * hq (``input:
gt``, the default: exact and free) or the frozen TM's estimate TM(y, sigma) (``input: tm``: trains on
the errors RM sees at inference, at the cost of one TM forward per step). Validation uses sigma =
max(sigma*, floor) and sigma' = max(val_rho sigma, floor), no jitter.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from omegaconf import MISSING, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from data.blur import gaussian_blur
from data.datasets import FaceDataset
from data.degradation import load_degradation_config
from utils.checkpoint import CheckpointError, load_checkpoint, read_state_dict, save_checkpoint
from utils.config import ConfigError, RequiredWeightsNode, WeightsNode, instantiate, load_config, to_dict
from utils.distributed import ShardedInfiniteSampler, launched_rank, single_process_from_multi_request
from utils.ema import EMA
from utils.lr_schedule import lr_at
from utils.model_factory import resolve_path
from utils.precision import autocast_runs
from utils.run_checkpoints import CheckpointSeries, MixedRunsError, ResumeError, accelerate_checkpoints
from utils.train_log import TrainLogger
from utils.train_schema import TrainSection, check_train

EMA_FINAL = "ema_final.pth"


class TrainingError(RuntimeError):
    """A run that cannot start or resume as configured (message names the file / key)."""


# ----------------------------------------------------------------------------------------------------
# Configuration schemas (utils.config.load_config rejects unknown keys and wrong types)


class TaskName(Enum):
    sde = "sde"
    tm = "tm"
    rm = "rm"


class LossType(Enum):
    l1 = "l1"
    l2 = "l2"


class RMInput(Enum):
    gt = "gt"
    tm = "tm"


@dataclass
class DataConfig:
    train: str = MISSING  # folder of images or text file list (relative names resolved beside it)
    val: str = MISSING
    resolution: int = MISSING
    flip: bool = True
    degradation: Any = "configs/degradation/difface_blind.yaml"  # YAML path or an inline mapping
    train_seed: int = 0
    val_seed: int = 1234  # fixed degradations of the validation images
    val_size: Optional[int] = None  # first N validation images; null = all
    num_workers: int = 2


@dataclass
class SigmaSampling:
    log_margin: float = 0.25  # m of sigma* exp(U(-m, m))
    offset_512: float = 0.5  # additive U(0, offset), 512-px units
    min_512: float = 0.5  # floor, 512-px units (DBLM's sigma_min_512)


@dataclass
class ExperimentConfig:
    task: TaskName = MISSING
    save_dir: str = MISSING
    model: WeightsNode = field(default_factory=WeightsNode)  # ckpt_path: initial weights (replaces init)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSection = MISSING


@dataclass
class SDEConfig(ExperimentConfig):
    loss: LossType = LossType.l1
    log_eps_512: float = 0.1  # eps of log(sigma* + eps), 512-px units


@dataclass
class WarmStart:
    ckpt_path: str = MISSING  # a global-residual SwinIR's state_dict, e.g. weights/demo/restorer_demo64.pth
    image: int = 0  # the stacked input image its first convolution reads (TM: 0 = y; RM: 1 = y_blur)


@dataclass
class TMConfig(ExperimentConfig):
    loss: LossType = LossType.l1
    sigma: SigmaSampling = field(default_factory=SigmaSampling)
    init: Optional[WarmStart] = None  # start the backbone from a trained restorer (DiffBIR.transform)


@dataclass
class RMConfig(TMConfig):
    rho_range: List[float] = field(default_factory=lambda: [0.6, 0.9])
    val_rho: float = 0.75
    input: RMInput = RMInput.gt
    tm: Optional[RequiredWeightsNode] = None  # the TM's ema_final.pth; required when input is 'tm'


SCHEMAS = {TaskName.sde: SDEConfig, TaskName.tm: TMConfig, TaskName.rm: RMConfig}


def load_experiment(path: str | Path, tasks: Sequence[str], overrides: Optional[list] = None):
    """Load and validate a training config whose ``task`` is one of ``tasks``; ConfigError otherwise."""
    raw = load_config(path, overrides=overrides)
    task = raw.get("task", None)
    allowed = [t for t in tasks]
    if task not in allowed:
        raise ConfigError(f"{path}: key 'task' must be one of {allowed} for this script, got {task!r}")
    cfg = load_config(path, SCHEMAS[TaskName(task)], overrides)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{path}: missing required key(s) {missing}")
    _check_values(cfg, path)
    return cfg


def _check_values(cfg, path) -> None:
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: '{key}' {why}")

    try:
        check_train(cfg.train, world_size=1)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    need(cfg.train.microbatch == 0, "train.microbatch", "(gradient accumulation) is main.py's only: set 0")
    need(not cfg.train.log_sample_paths, "train.log_sample_paths", "is main.py's only: set false")
    need(cfg.data.resolution >= 8, "data.resolution", f"must be >= 8, got {cfg.data.resolution}")
    if "sigma" in cfg:
        need(cfg.sigma.log_margin >= 0, "sigma.log_margin", "must be >= 0")
        need(cfg.sigma.offset_512 >= 0, "sigma.offset_512", "must be >= 0")
        need(cfg.sigma.min_512 >= 0, "sigma.min_512", "must be >= 0")
    if "rho_range" in cfg:
        lo_hi = list(cfg.rho_range)
        need(len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] < 1, "rho_range",
             f"must be [low, high] with 0 < low <= high < 1, got {lo_hi}")
        need(0 < cfg.val_rho < 1, "val_rho", f"must be in (0, 1), got {cfg.val_rho}")
        need(cfg.input is RMInput.gt or cfg.tm is not None, "tm",
             "(target, params, ckpt_path of the trained TM) is required when input is 'tm'")


# ----------------------------------------------------------------------------------------------------
# Tasks: model, loss and validation metric of each network


def image_loss(kind: LossType, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(out, target) if kind is LossType.l1 else F.mse_loss(out, target)


def batch_psnr(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB), (N,), in the convention of ``utils.metrics.psnr`` (checked against it in
    tests/test_dblm_module.py): 10 log10(255^2 / MSE) over all pixels and channels of the uint8 values
    the images are saved as, round(clip((x + 1) / 2, 0, 1) * 255). Batched in torch, so that the
    training processes need not import basicsr."""
    def uint8_values(x: torch.Tensor) -> torch.Tensor:
        return ((x.detach().double().clamp(-1.0, 1.0) + 1.0) * 127.5).round()

    mse = (uint8_values(out) - uint8_values(target)).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0 ** 2 / mse)


class Task:
    """Model construction, training loss and validation metric of one DBLM network."""

    metric: str = ""

    def __init__(self, cfg, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.resolution = cfg.data.resolution

    def px(self, value_512: float) -> float:
        """A 512-px quantity in pixels at the training resolution."""
        return value_512 * self.resolution / 512.0

    def build_model(self) -> nn.Module:
        """``model``, with the weights of ``model.ckpt_path`` (continue from earlier weights) if set, else
        warm-started by ``init`` if set (TM, RM), else freshly initialised."""
        model = instantiate(self.cfg.model)
        init = self.cfg.get("init", None)
        if self.cfg.model.ckpt_path:
            load_checkpoint(model, resolve_path(self.cfg.model.ckpt_path))
        elif init is not None:
            source = read_state_dict(init.ckpt_path, hint="'init.ckpt_path' must be a trained restorer's "
                                     "state_dict (e.g. weights/demo/restorer_demo64.pth)")
            try:
                model.warm_start(source, init.image)
            except ValueError as err:
                raise TrainingError(f"init: {init.ckpt_path}: {err}") from None
        return model

    def loss(self, model: nn.Module, batch: dict) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Per-image validation metric, shape (N,)."""
        raise NotImplementedError


class SDETask(Task):
    """SDE: loss(log sigma_hat, log(sigma* + eps)); validation: |sigma_hat - sigma*| in pixels."""

    metric = "sigma_mae_px"

    def loss(self, model, batch):
        log_sigma = model(batch["lq"], log=True)
        target = torch.log(batch["sigma_star"] + self.px(self.cfg.log_eps_512))
        err = log_sigma.float() - target
        loss = err.abs().mean() if self.cfg.loss is LossType.l1 else err.pow(2).mean()
        return loss, {"loss": loss.detach(), "log_sigma_mae": err.detach().abs().mean()}

    def evaluate(self, model, batch):
        return (model(batch["lq"]).float() - batch["sigma_star"]).abs()


class TMTask(Task):
    """TM: (y, sigma) -> G_sigma * hq, sigma jittered around sigma* (module docstring)."""

    metric = "psnr"

    def floor(self) -> float:
        return self.px(self.cfg.sigma.min_512)

    def sample_sigma(self, sigma_star: torch.Tensor) -> torch.Tensor:
        m = self.cfg.sigma.log_margin
        u = (torch.rand_like(sigma_star) * 2.0 - 1.0) * m
        v = torch.rand_like(sigma_star) * self.px(self.cfg.sigma.offset_512)
        return (sigma_star * u.exp() + v).clamp(min=self.floor())

    def loss(self, model, batch):
        sigma = self.sample_sigma(batch["sigma_star"])
        out = model(batch["lq"], sigma)
        loss = image_loss(self.cfg.loss, out.float(), gaussian_blur(batch["hq"], sigma))
        return loss, {"loss": loss.detach(), "sigma_px": sigma.mean()}

    def evaluate(self, model, batch):
        sigma = batch["sigma_star"].clamp(min=self.floor())
        return batch_psnr(model(batch["lq"], sigma), gaussian_blur(batch["hq"], sigma))


class RMTask(TMTask):
    """RM: (y, blurred level at sigma, sigma') -> G_sigma' * hq, sigma' = r sigma, r ~ U(rho_range)."""

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.tm = None
        if cfg.input is RMInput.tm:
            self.tm = instantiate(cfg.tm)
            load_checkpoint(self.tm, cfg.tm.ckpt_path, strict=True, hint="set 'tm.ckpt_path' to the TM's "
                            f"{EMA_FINAL} (train it first with train_DBLM.py)")
            self.tm.to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def level_input(self, batch: dict, sigma: torch.Tensor) -> torch.Tensor:
        """The blurrier level RM starts from: G_sigma * hq, or the frozen TM's estimate of it."""
        if self.tm is None:
            return gaussian_blur(batch["hq"], sigma)
        return self.tm(batch["lq"], sigma).clamp(-1.0, 1.0)

    def target_sigma(self, sigma: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        return torch.minimum(sigma, (sigma * ratio).clamp(min=self.floor()))

    def loss(self, model, batch):
        sigma = self.sample_sigma(batch["sigma_star"])
        lo, hi = self.cfg.rho_range
        sigma_t = self.target_sigma(sigma, lo + (hi - lo) * torch.rand_like(sigma))
        out = model(batch["lq"], self.level_input(batch, sigma), sigma_t)
        loss = image_loss(self.cfg.loss, out.float(), gaussian_blur(batch["hq"], sigma_t))
        return loss, {"loss": loss.detach(), "sigma_target_px": sigma_t.mean()}

    def evaluate(self, model, batch):
        sigma = batch["sigma_star"].clamp(min=self.floor())
        sigma_t = self.target_sigma(sigma, torch.full_like(sigma, self.cfg.val_rho))
        out = model(batch["lq"], self.level_input(batch, sigma), sigma_t)
        return batch_psnr(out, gaussian_blur(batch["hq"], sigma_t))


TASKS = {TaskName.sde: SDETask, TaskName.tm: TMTask, TaskName.rm: RMTask}


# ----------------------------------------------------------------------------------------------------
# Checkpoints


class TrainState:
    """The step counter, saved with the accelerate state (``register_for_checkpointing``)."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def resolve_resume(checkpoints: CheckpointSeries, resume: str) -> Optional[Path]:
    """``auto``: newest complete checkpoint or None; ``none``: None; otherwise that directory."""
    try:
        return checkpoints.resolve_resume(resume)
    except ResumeError:
        raise TrainingError(f"--resume {resume}: not a checkpoint directory") from None


def load_error_summary(err: Exception, details: int = 2) -> str:
    """One line from a (multi-line) state-dict loading error: its header and its first ``details``
    reasons, e.g. "Error(s) in loading state_dict for SigmaEstimator: size mismatch for head.0.weight: ..."."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    more = len(lines) - 1 - details
    return " ".join(lines[:1 + details]) + (f" (and {more} more)" if more > 0 else "")


def save_training_state(accelerator, checkpoints: CheckpointSeries, step: int, keep: int) -> None:
    """accelerate state -> step_XXXXXXX: every process writes into the temporary directory, the main
    process renames it when all are done and drops all but the newest ``keep`` checkpoints."""
    if accelerator.is_main_process:
        checkpoints.prepare(step)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(checkpoints.temporary_path(step)))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        checkpoints.commit(step)
        checkpoints.rotate(keep)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------------
# Data


class EpochTaggedSampler(Sampler):
    """Yields (epoch, index) from a ShardedInfiniteSampler: the epoch is the pass over the data that the
    index belongs to, so that ``EpochDataset`` draws fresh degradations in every epoch."""

    def __init__(self, inner: ShardedInfiniteSampler):
        self.inner = inner

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for position, index in enumerate(self.inner, start=self.inner.start):
            yield position // self.inner.per_rank, index


class EpochDataset(Dataset):
    """``FaceDataset`` indexed by (epoch, index) (its randomness is item_rng(seed, index, epoch))."""

    def __init__(self, dataset: FaceDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.set_epoch(epoch)  # each DataLoader worker holds its own copy
        return self.dataset[index]


def make_dataset(cfg, split: str) -> FaceDataset:
    """The training (random flips) or validation (first ``val_size`` images) FaceDataset with sigma*."""
    d = cfg.data
    degradation = d.degradation if isinstance(d.degradation, str) else OmegaConf.to_container(d.degradation)
    try:
        degradation = load_degradation_config(degradation)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.degradation: {err}") from None
    try:
        if split == "train":
            return FaceDataset(d.train, d.resolution, flip=d.flip, degradation=degradation, seed=d.train_seed,
                               with_sigma_star=True)
        return FaceDataset(d.val, d.resolution, flip=False, degradation=degradation, seed=d.val_seed,
                           with_sigma_star=True, length=d.val_size)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.{split}: {err}") from None


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------------
# The loop


@torch.no_grad()
def validate(task: Task, model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Mean per-image metric of ``model`` over the validation loader."""
    model.eval()
    values = [task.evaluate(model, to_device(batch, device)).float().cpu() for batch in loader]
    return float(torch.cat(values).mean())


def accelerate_precision(amp: str, use_cuda: bool) -> str:
    """accelerate's ``mixed_precision`` for ``train.amp``: the configured one where it runs
    (``utils.precision``), else 'no'."""
    return amp if amp != "none" and autocast_runs(amp, use_cuda) else "no"


def train(cfg, resume: str = "auto") -> Path:
    """Train the network of ``cfg.task``; returns the path of the exported EMA weights."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if single_process_from_multi_request():
        raise TrainingError("accelerate launch started one process although --num_processes asks for more: it "
                            "starts several only with --multi_gpu (also on a machine without GPUs: gloo on the CPU)")
    use_cuda = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not use_cuda,
                              mixed_precision=accelerate_precision(cfg.train.amp, use_cuda))
    per_process, _ = check_train(cfg.train, accelerator.num_processes)
    save_dir = Path(cfg.save_dir)
    train_set, val_set = make_dataset(cfg, "train"), make_dataset(cfg, "val")  # every rank: same errors
    set_seed(cfg.train.seed, device_specific=True)
    task = TASKS[cfg.task](cfg, accelerator.device)
    model = task.build_model()
    ema = EMA(model, cfg.train.ema_rate)
    ema.model.to(accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                                  weight_decay=cfg.train.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()
    accelerator.register_for_checkpointing(ema, state)

    checkpoints = accelerate_checkpoints(save_dir)
    start = resolve_resume(checkpoints, resume)
    if start is not None:
        try:
            accelerator.load_state(str(start))
        except (RuntimeError, KeyError, FileNotFoundError) as err:
            raise TrainingError(f"cannot resume from {start} (does the config match the run that wrote "
                                f"it?): {load_error_summary(err)}") from None
        ema.model.to(accelerator.device)
    try:
        checkpoints.check_start(state.step)
    except MixedRunsError as err:
        raise TrainingError(str(err)) from None
    if accelerator.is_main_process:
        print(f"{accelerator.num_processes} process(es), mixed precision: {accelerator.mixed_precision} "
              f"(train.amp: {cfg.train.amp})", flush=True)
        save_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(to_dict(cfg)), save_dir / "config.yaml")
        if start is not None:
            print(f"resumed from {start} at step {state.step}", flush=True)

    sampler = ShardedInfiniteSampler(len(train_set), accelerator.process_index, accelerator.num_processes,
                                     seed=cfg.train.seed, start=state.step * per_process)
    loader = iter(DataLoader(EpochDataset(train_set), batch_size=per_process,
                             sampler=EpochTaggedSampler(sampler), num_workers=cfg.data.num_workers,
                             generator=torch.Generator().manual_seed(cfg.train.seed)))
    val_loader = DataLoader(val_set, batch_size=cfg.train.batch[1], shuffle=False,  # main process only
                            num_workers=cfg.data.num_workers, generator=torch.Generator())
    t = cfg.train
    logger = TrainLogger(save_dir, t.iterations, state.step, accelerator.is_main_process, t.log_freq)
    model.train()
    while state.step < t.iterations:
        batch = to_device(next(loader), accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state.step + 1, lr=t.lr, total=t.iterations, warmup=t.warmup_iterations,
                                schedule=t.lr_schedule, min_lr=t.min_lr)
        with accelerator.autocast():
            loss, scalars = task.loss(model, batch)
        accelerator.backward(loss)
        if t.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)
        state.step += 1
        names = list(scalars)
        values = accelerator.reduce(torch.stack([scalars[k].float() for k in names]), "mean")
        if not torch.isfinite(values).all():  # checked after the reduction: every rank stops together
            bad = dict(zip(names, values.tolist()))
            raise TrainingError(f"non-finite training scalars at step {state.step}: {bad}")
        logger.step(state.step, dict(zip(names, values.tolist())))
        last = state.step == t.iterations
        if state.step % t.val_freq == 0 or last:
            if accelerator.is_main_process:
                logger.scalars(state.step, {task.metric: validate(task, ema.model, val_loader, accelerator.device)})
                model.train()
            accelerator.wait_for_everyone()
        if state.step % t.save_freq == 0 or last:
            save_training_state(accelerator, checkpoints, state.step, t.keep_checkpoints)
    logger.close()
    out = save_dir / EMA_FINAL
    if accelerator.is_main_process:
        save_checkpoint(out, ema.state_dict())
        print(f"EMA weights of step {state.step}: {out}", flush=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out


# ----------------------------------------------------------------------------------------------------
# Command line


def build_parser(tasks: Sequence[str], prog: str) -> argparse.ArgumentParser:
    """``prog --config X.yaml [--save_dir DIR] [--resume auto|none|DIR] [--seed N] [key=value ...]``."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Train DBLM network(s) {'/'.join(tasks)} "
                                     "(docs/method.md section 4) with accelerate.")
    parser.add_argument("--config", "--cfg_path", dest="config", required=True,
                        help="training YAML (configs/train/...)")
    parser.add_argument("--save_dir", default=None, help="output folder (default: the config's save_dir)")
    parser.add_argument("--resume", default="auto",
                        help="'auto' (newest checkpoint in save_dir, if any), 'none', or a checkpoint directory")
    parser.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.iterations=1000")
    return parser


def parse_args(argv: Sequence[str], tasks: Sequence[str], prog: str) -> argparse.Namespace:
    """The command line (:func:`build_parser`), overrides anywhere; ``--save_dir`` and ``--seed`` become
    overrides of ``save_dir`` and ``train.seed``."""
    args = build_parser(tasks, prog).parse_intermixed_args(list(argv))
    if args.save_dir is not None:
        args.overrides.append(f"save_dir={args.save_dir}")
    if args.seed is not None:
        args.overrides.append(f"train.seed={args.seed}")
    return args


def main(argv: Sequence[str], tasks: Sequence[str], prog: str) -> int:
    """Train as the command line says (:func:`parse_args`); exit status 2 on a bad config."""
    args = parse_args(argv, tasks, prog)
    try:
        cfg = load_experiment(args.config, tasks, args.overrides)
        train(cfg, args.resume)
    except (ConfigError, CheckpointError, TrainingError) as err:
        if launched_rank() == 0:  # every process meets the same configuration error: say it once
            print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0
