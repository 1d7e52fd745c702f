"""TrainerBase: the torchrun training loop shared by every ``main.py`` trainer (docs/method.md section 11).

``main.py --cfg_path X.yaml --save_dir DIR`` builds ``trainer.target`` (a dotted class path, the DifFace
convention) with the validated config and calls :meth:`TrainerBase.train`. The base class owns
everything that is not specific to a network:

* processes: DDP from the torchrun environment (NCCL on CUDA, gloo on CPU); plain ``python main.py``
  runs one process. The model is built from ``train.seed`` on every rank (DDP also broadcasts rank 0's
  weights); afterwards each rank reseeds torch/numpy/random from (seed, rank, step)
  (:func:`utils.distributed.rank_seed`), so ranks draw different noise.
* data: a :class:`~utils.distributed.ShardedInfiniteSampler`, i.e. a resumable DistributedSampler:
  ranks see disjoint samples within each epoch, and a run resumed at step ``s`` continues the data
  stream exactly where it stopped.
* batch semantics: ``train.batch: [A, B]``; ``A`` is the TOTAL number of training samples per optimiser
  step, summed over ranks (so changing the number of GPUs does not change the optimisation; ``A`` must
  be divisible by the world size); ``B`` is the validation batch size per rank. ``train.microbatch: C``
  splits each rank's ``A / world_size`` samples into chunks of ``C`` whose gradients are accumulated
  (DDP synchronises only on the last chunk); ``0`` means no splitting.
* optimisation: AdamW, learning rate with linear warm-up over ``train.warmup_iterations`` then constant
  or cosine decay to ``train.min_lr`` at ``train.iterations``; optional gradient clipping; mixed
  precision (``train.amp: bf16 | fp16 | none``; fp16 on CUDA only, with a GradScaler; bf16 on CUDA and
  CPU, ``utils.precision``);
  EMA of the weights (:class:`utils.ema.EMA`, rate ``train.ema_rate``) updated after every step.
* checkpoints ``DIR/ckpt_{step:07d}.pth`` every ``train.save_freq`` steps and at the end, written by
  rank 0. They hold ``model``, ``ema``, ``optimizer``, ``scaler``, ``step``, ``config`` and ``rng`` (the
  torch/numpy/python/CUDA RNG states of every rank, gathered). Naming, the atomic write (temporary
  ``.partial`` file, renamed when complete), rotation (``train.keep_checkpoints`` newest, 0 = all) and
  ``--resume`` follow ``utils.run_checkpoints``, shared with the accelerate loop of DiffBIR/training.py:
  ``--resume auto`` (the default) continues from the newest complete checkpoint in DIR, ``--resume
  PATH`` from a file, ``--resume none`` starts afresh. On resume the step counter continues; each rank
  restores its own RNG state when the world size is unchanged, else reseeds from (seed, rank, step).
* validation every ``train.val_freq`` steps and at the end, of the online and the EMA model, on the
  ``data.val`` split cut into batches of ``train.batch[1]`` consecutive faces, dealt to the ranks in turn;
  a batch's validation noise is seeded by its index in the split (:meth:`TrainerBase.val_generator`), so
  the numbers do not depend on the number of ranks; per-sample metrics are averaged over the whole split.
* logging through :class:`utils.train_log.TrainLogger` (tensorboard in ``DIR/tb``, console, tqdm).
  ``train.log_sample_paths: true`` (a test/debug switch) appends ``step<TAB>path`` of every training
  sample to ``DIR/sample_paths_rank{r}.txt``.

Adding a trainer: subclass :class:`TrainerBase`, set ``config_schema`` to a dataclass extending
:class:`TrainerConfig` with the sections it needs, and implement ``build_dataset``, ``compute_loss``
and ``val_metrics``; override ``build_extras`` for frozen networks / diffusion objects and
``build_model`` when the trained module is not simply ``instantiate(cfg.model)``. AdamW optimises the
parameters of ``build_model``'s module that require gradients (freeze sub-modules with
``requires_grad_(False)``); ``compute_loss`` receives the DDP-wrapped module (call it, don't reach into
``.module``, so gradients synchronise), ``val_metrics`` the plain module or its EMA copy.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from data.datasets import FaceDataset
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.config import ConfigError, WeightsNode, get_obj_from_str, instantiate, load_config, to_dict
from utils.distributed import (DistInfo, EpochIndexed, ShardedInfiniteSampler, all_gather_object,
                               all_reduce_mean, all_reduce_sum, barrier, init_distributed, rank_seed)
from utils.model_factory import resolve_path
from utils.ema import EMA
from utils.lr_schedule import lr_at
from utils.precision import autocast_runs
from utils.run_checkpoints import MixedRunsError, ResumeError, torchrun_checkpoints
from utils.train_log import TrainLogger
from utils.train_schema import TrainSection, check_train

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------------------- schema
@dataclass
class TrainerSection:
    target: str = MISSING  # dotted path of the TrainerBase subclass, e.g. trainers.diffusion.TrainerDiffusion


@dataclass
class DataSplit:
    source: Any = MISSING  # image folder, list file (.txt) or list of image paths
    resolution: int = MISSING
    flip: bool = True
    length: Optional[int] = None  # use only the first `length` images (None: all)


@dataclass
class DataSection:
    train: DataSplit = MISSING
    val: Optional[DataSplit] = None
    num_workers: int = 0


@dataclass
class TrainerConfig:
    trainer: TrainerSection = MISSING
    model: WeightsNode = MISSING  # ckpt_path: initial weights (fine-tuning); resuming uses --resume instead
    data: DataSection = MISSING
    train: TrainSection = MISSING


# ----------------------------------------------------------------------------------------- helpers
def find_latest_checkpoint(save_dir: str | Path) -> Optional[Path]:
    """Newest complete ``ckpt_{step:07d}.pth`` in ``save_dir`` (by step), or None."""
    return torchrun_checkpoints(save_dir).latest()


def _rng_state() -> Dict[str, Any]:
    """This process's torch / numpy / python (/ CUDA) RNG states as tensors, ints and lists only, so a
    checkpoint stays loadable with ``torch.load(weights_only=True)``."""
    version, words, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])},
             "python": {"version": version, "words": list(words), "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
                         "has_gauss": npy["has_gauss"], "gauss": npy["gauss"]})
    py = state["python"]
    random.setstate((py["version"], tuple(py["words"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _split(batch: Dict[str, Any], size: int) -> Iterator[Dict[str, Any]]:
    """Chunks of ``size`` samples of a collated batch (tensors and lists sliced along the first axis)."""
    n = len(next(iter(batch.values())))
    for start in range(0, n, size):
        yield {k: v[start:start + size] for k, v in batch.items()}


# ----------------------------------------------------------------------------------------- trainer
class TrainerBase:
    """Distributed training loop; subclasses supply the data, the model and the loss (module docstring)."""

    config_schema: ClassVar[type] = TrainerConfig

    def __init__(self, cfg: DictConfig, save_dir: str | Path, resume: str = "auto",
                 dist_info: Optional[DistInfo] = None):
        self.cfg = cfg
        self.save_dir = Path(save_dir)
        self.checkpoints = torchrun_checkpoints(self.save_dir)
        self.resume = resume
        self.dist = dist_info or init_distributed()
        self.device = self.dist.device
        tc = cfg.train
        self.batch_per_rank, self.microbatch = check_train(tc, self.dist.world_size)
        self.amp_dtype = AMP_DTYPES[tc.amp] if autocast_runs(tc.amp, self.device.type == "cuda") else None
        self.step = 0

    # ------------------------------------------------------------------ hooks for subclasses
    def build_extras(self) -> None:
        """Frozen networks, diffusion objects, metrics: anything the loss needs but does not train."""

    def build_model(self) -> nn.Module:
        """The trained network (default: ``instantiate(cfg.model)``, loading ``cfg.model.ckpt_path`` if set)."""
        model = self.instantiate_section("model")
        if self.cfg.model.get("ckpt_path"):
            load_checkpoint(model, resolve_path(self.cfg.model.ckpt_path))
        return model

    def build_dataset(self, split: str) -> Optional[Dataset]:
        """Dataset of ``split`` ('train' or 'val'; None for no validation). Items are dicts of tensors
        (and lists such as ``path``); ``train.log_sample_paths`` needs a ``path`` entry."""
        raise NotImplementedError

    def compute_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """(scalar loss averaged over the micro-batch, scalars to log) for one micro-batch on the device."""
        raise NotImplementedError

    def val_metrics(self, model: nn.Module, batch: Dict[str, Any], batch_idx: int) -> Dict[str, torch.Tensor]:
        """Per-sample metrics ``{name: tensor of shape (B,)}`` of ``model`` (eval mode, no grad) on the
        validation batch ``batch_idx`` (its index in the whole split); the base averages them over the
        whole split and all ranks."""
        raise NotImplementedError

    # ------------------------------------------------------------------ utilities for subclasses
    def instantiate_section(self, name: str) -> Any:
        """``instantiate(cfg.<name>)``; a constructor's ValueError (inconsistent params) becomes a ConfigError."""
        try:
            return instantiate(self.cfg[name])
        except ConfigError as err:
            raise ConfigError(f"{name}: {err}") from None
        except ValueError as err:
            raise ConfigError(f"{name}.params: {err}") from None

    def face_dataset(self, split: str, **kwargs: Any) -> Optional[FaceDataset]:
        """``data.<split>`` as a :class:`data.datasets.FaceDataset` (None when the split is not configured);
        ``kwargs`` (e.g. ``degradation``) go to FaceDataset. Sample randomness is seeded by ``train.seed``."""
        node = self.cfg.data.get(split)
        if node is None:
            return None
        source = resolve_path(node.source) if isinstance(node.source, str) else [resolve_path(p) for p in node.source]
        try:
            return FaceDataset(source, resolution=node.resolution, flip=node.flip, length=node.length,
                               seed=self.cfg.train.seed, **kwargs)
        except ConfigError:
            raise
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.{split}.source: {err}") from None

    def val_generator(self, batch_idx: int) -> torch.Generator:
        """A generator with a fixed seed per validation batch: the same noise at every validation.

        ``batch_idx`` is the batch's index in the whole split (:meth:`_validate`), so a face meets the
        same noise whatever the number of ranks, and ``trainers.evaluate`` in one process reproduces a
        multi-rank run's validation."""
        return torch.Generator(device=self.device).manual_seed(rank_seed(self.cfg.train.seed + 1, 0, batch_idx))

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ driver
    def train(self) -> int:
        """Run (or resume) training up to ``train.iterations``; returns the final step."""
        tc = self.cfg.train
        _seed_all(tc.seed)  # identical model initialisation on every rank
        self.build_extras()
        model = self.build_model().to(self.device)
        train_set = self.build_dataset("train")
        val_set = self.build_dataset("val")
        if val_set is not None and not self._val_batches(len(val_set)):
            raise ConfigError(f"data.val: {len(val_set)} images in batches of train.batch[1]={tc.batch[1]} "
                              f"give fewer batches than the {self.dist.world_size} ranks")
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=tc.lr, betas=tuple(tc.betas),
                                      weight_decay=tc.weight_decay)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        ema = EMA(model, rate=tc.ema_rate)
        ckpt = self._resume_checkpoint()
        if ckpt is not None:
            self._load(ckpt, model, ema, optimizer, scaler)
        else:
            _seed_all(rank_seed(tc.seed, self.dist.rank, 0))
        try:
            self.checkpoints.check_start(self.step)
        except MixedRunsError as err:
            raise CheckpointError(str(err)) from None
        self.save_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            OmegaConf.save(self.cfg, self.save_dir / "config.yaml")
        ddp = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.dist.is_distributed else model

        logger = TrainLogger(self.save_dir, total_steps=tc.iterations, start_step=self.step,
                             is_main=self.dist.is_main, print_every=tc.log_freq)
        data = iter(self._train_loader(train_set))
        paths_file = self.save_dir / f"sample_paths_rank{self.dist.rank}.txt" if tc.log_sample_paths else None
        try:
            while self.step < tc.iterations:
                self.step += 1
                batch = next(data)
                if paths_file is not None:
                    with open(paths_file, "a") as fh:
                        fh.writelines(f"{self.step}\t{p}\n" for p in batch["path"])
                scalars = self._optimise(ddp, model, batch, optimizer, scaler)
                ema.update(model)
                logger.step(self.step, all_reduce_mean(scalars, self.device))
                last = self.step == tc.iterations
                if val_set is not None and (self.step % tc.val_freq == 0 or last):
                    logger.scalars(self.step, self._validate(model, val_set), prefix="val")
                    logger.scalars(self.step, self._validate(ema.model, val_set), prefix="val_ema")
                if self.step % tc.save_freq == 0 or last:
                    self._save(model, ema, optimizer, scaler)
        finally:
            logger.close()
        if self.dist.is_main:
            print(f"training finished at step {self.step}; checkpoints in {self.save_dir}", flush=True)
        return self.step

    @torch.no_grad()
    def evaluate(self, weights: Sequence[str]) -> List[Dict[str, float]]:
        """The validation metrics of each weights file on ``data.val``, one dict per file.

        A file is a training checkpoint (its EMA weights, as :func:`utils.checkpoint.load_checkpoint`
        unwraps it) or an exported state dict. Every file sees the same faces and the same validation
        noise (:meth:`val_generator`), so the numbers are those a run logs as ``val_ema/*`` and compare
        across runs; ``data.val.length`` chooses how many faces.
        """
        _seed_all(self.cfg.train.seed)
        self.build_extras()
        model = self.build_model().to(self.device)
        val_set = self.build_dataset("val")
        if val_set is None:
            raise ConfigError("data.val is not configured: nothing to evaluate on")
        results = []
        for path in weights:
            load_checkpoint(model, resolve_path(path))
            results.append(self._validate(model, val_set))
        return results

    # ------------------------------------------------------------------ internals
    def _train_loader(self, dataset: Dataset) -> DataLoader:
        with_epoch = hasattr(dataset, "set_epoch")
        if len(dataset) < self.batch_per_rank * self.dist.world_size:
            raise ConfigError(f"data.train: {len(dataset)} images, fewer than one batch (train.batch[0])")
        sampler = ShardedInfiniteSampler(len(dataset), self.dist.rank, self.dist.world_size, seed=self.cfg.train.seed,
                                         start=self.step * self.batch_per_rank, with_epoch=with_epoch)
        dataset = EpochIndexed(dataset) if with_epoch else dataset
        workers = self.cfg.data.num_workers
        # own generator (worker seeds): creating the iterator must not consume the training RNG stream
        gen = torch.Generator().manual_seed(rank_seed(self.cfg.train.seed, self.dist.rank, self.step))
        return DataLoader(dataset, batch_size=self.batch_per_rank, sampler=sampler, num_workers=workers,
                          pin_memory=self.device.type == "cuda", drop_last=True, persistent_workers=workers > 0,
                          generator=gen)

    def _to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _optimise(self, ddp: nn.Module, model: nn.Module, batch: Dict[str, Any], optimizer, scaler) -> Dict[str, float]:
        tc = self.cfg.train
        for group in optimizer.param_groups:
            group["lr"] = lr_at(self.step, lr=tc.lr, total=tc.iterations, warmup=tc.warmup_iterations,
                                schedule=tc.lr_schedule, min_lr=tc.min_lr)
        optimizer.zero_grad(set_to_none=True)
        chunks = list(_split(self._to_device(batch), self.microbatch))
        totals: Dict[str, float] = {}
        for i, chunk in enumerate(chunks):
            sync = i == len(chunks) - 1 or not self.dist.is_distributed
            with (contextlib.nullcontext() if sync else ddp.no_sync()):
                with self.autocast():
                    loss, scalars = self.compute_loss(ddp, chunk)
                scaler.scale(loss / len(chunks)).backward()
            for k, v in scalars.items():
                totals[k] = totals.get(k, 0.0) + float(v) / len(chunks)
        if tc.grad_clip > 0:
            scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            totals["grad_norm"] = float(nn.utils.clip_grad_norm_(params, tc.grad_clip))
        scaler.step(optimizer)
        scaler.update()
        totals["lr"] = optimizer.param_groups[0]["lr"]
        return totals

    def _val_batches(self, num_samples: int) -> List[int]:
        """Indices (in the whole split) of this rank's validation batches: the split is cut into batches
        of ``train.batch[1]`` consecutive faces and the batches are dealt to the ranks in turn."""
        num_batches = -(-num_samples // self.cfg.train.batch[1])
        return list(range(self.dist.rank, num_batches, self.dist.world_size))

    @torch.no_grad()
    def _validate(self, model: nn.Module, dataset: Dataset) -> Dict[str, float]:
        size = self.cfg.train.batch[1]
        batches = self._val_batches(len(dataset))
        shard = Subset(dataset, [i for b in batches for i in range(b * size, min((b + 1) * size, len(dataset)))])
        loader = DataLoader(shard, batch_size=size, shuffle=False,
                            num_workers=self.cfg.data.num_workers, generator=torch.Generator().manual_seed(0))
        was_training = model.training
        model.eval()
        sums: Dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for idx, batch in zip(batches, loader):
            with self.autocast():
                metrics = self.val_metrics(model, self._to_device(batch), idx)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v.detach().double().sum()
            count += next(iter(metrics.values())).numel()
        model.train(was_training)
        keys = sorted(sums)
        packed = all_reduce_sum(torch.stack([sums[k] for k in keys] + [count]))
        return {k: float(packed[i] / packed[-1]) for i, k in enumerate(keys)}

    def _resume_checkpoint(self) -> Optional[Dict[str, Any]]:
        try:
            path = self.checkpoints.resolve_resume(self.resume)
        except ResumeError as err:
            raise CheckpointError(f"--resume: checkpoint not found: {Path(err.resume)}") from None
        if path is None:
            return None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure is reported with the file name
            raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from None
        if self.dist.is_main:
            print(f"resuming from {path} at step {ckpt['step']}", flush=True)
        return {**ckpt, "path": str(path)}

    def _load(self, ckpt: Dict[str, Any], model: nn.Module, ema: EMA, optimizer, scaler) -> None:
        try:
            load_checkpoint(model, ckpt["model"])
            load_checkpoint(ema.model, ckpt["ema"])
        except CheckpointError as err:
            raise CheckpointError(f"--resume {ckpt['path']}: {err}") from None
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        states = ckpt.get("rng") or []
        if len(states) == self.dist.world_size:
            _set_rng_state(states[self.dist.rank])
        else:
            _seed_all(rank_seed(self.cfg.train.seed, self.dist.rank, self.step))

    def _save(self, model: nn.Module, ema: EMA, optimizer, scaler) -> None:
        rng = all_gather_object(_rng_state())  # collective: every rank takes part
        if self.dist.is_main:
            state = {"step": self.step, "model": model.state_dict(), "ema": ema.state_dict(),
                     "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng,
                     "config": to_dict(self.cfg)}
            self.checkpoints.write(self.step, lambda path: torch.save(state, path))
            self.checkpoints.rotate(self.cfg.train.keep_checkpoints)
        barrier()


def trainer_class(cfg_path: str, overrides: List[str]) -> type:
    """The class named by the config's ``trainer.target`` (a :class:`TrainerBase` subclass)."""
    raw = load_config(cfg_path, overrides=overrides)
    target = OmegaConf.select(raw, "trainer.target")
    if not isinstance(target, str):
        raise ConfigError(f"{cfg_path}: missing key 'trainer.target' (dotted trainer class path)")
    cls = get_obj_from_str(target)
    if not (isinstance(cls, type) and issubclass(cls, TrainerBase)):
        raise ConfigError(f"{cfg_path}: trainer.target '{target}' is not a TrainerBase subclass")
    return cls
