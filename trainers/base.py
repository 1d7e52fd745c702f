"""TrainerBase: the one training loop of every network (docs/method.md section 11).

``main.py``, ``train_SDE.py`` and ``train_DBLM.py`` build the subclass named by the config's ``trainer.target``
(:func:`load_training_config`) and call :meth:`TrainerBase.train`. A subclass sets ``config_schema`` and implements
``build_dataset``, ``compute_loss`` (called with the DDP-wrapped module) and ``val_metrics``; the base class owns
processes (``torch.distributed`` from the launcher's environment), seeding (:attr:`TrainerBase.seeding`), sharded
resumable data, AdamW with :func:`utils.lr_schedule.lr_at`, clipping, ``train.amp``, EMA, checkpoints
(:mod:`utils.run_checkpoints`), validation and logging. ``train.batch: [A, B]``: A samples per optimiser step summed
over processes, B the validation batch of a process; ``train.microbatch`` accumulates gradients in chunks.
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
from data.degradation import DegradationConfig, load_degradation_config
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.config import (
    ConfigError,
    WeightsNode,
    get_obj_from_str,
    instantiate,
    load_config,
    override_hint,
    require_keys,
    to_dict,
)
from utils.distributed import (
    DistInfo,
    EpochIndexed,
    ShardedInfiniteSampler,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    rank_seed,
    single_process_from_multi_request,
)
from utils.ema import EMA
from utils.image_io import write_bytes_atomic, write_failure
from utils.lr_schedule import lr_at
from utils.model_factory import resolve_path
from utils.run_checkpoints import (
    CheckpointSeries,
    main_process_writes,
    restore_training_state,
    resume_state,
    run_checkpoints,
    save_training_state,
)
from utils.train_log import TrainLogger
from utils.train_schema import TrainSection, check_train

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SEEDINGS = ("reseed", "rank_offset")
_ABSENT = object()


class TrainingError(RuntimeError):
    """A run that cannot go on as configured (the message says why, in one line)."""


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``train.amp`` on ``device``: bf16 on CUDA and on the CPU, fp16 on CUDA only; None
    (float32) otherwise."""
    if amp == "none" or (amp == "fp16" and device.type != "cuda"):
        return None
    return AMP_DTYPES[amp]


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
    seed: Optional[int] = None  # seed of the per-image flips and degradations (None: train.seed)


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


# Keys of the configs/train/ dialect (DBLM configs before they joined the one above): refused with where they went.
MOVED_KEYS = {
    "task": "trainer.target (trainers.sde.TrainerSDE, trainers.transform.TrainerTM or TrainerRM)",
    "save_dir": "the command's --save_dir",
    "data.degradation": "degradation (top level)",
    "data.resolution": "data.train.resolution and data.val.resolution",
    "data.flip": "data.train.flip",
    "data.train_seed": "data.train.seed",
    "data.val_seed": "data.val.seed",
    "data.val_size": "data.val.length",
}


def refuse_moved_keys(cfg: DictConfig, path: str | Path) -> None:
    """ConfigError naming the first key of :data:`MOVED_KEYS` in ``cfg`` (or a path-valued ``data.train`` /
    ``data.val``) and where it went."""
    for old, new in MOVED_KEYS.items():
        if OmegaConf.select(cfg, old, default=_ABSENT) is not _ABSENT:
            raise ConfigError(f"{path}: '{old}' moved to '{new}'")
    for split in ("train", "val"):
        if isinstance(OmegaConf.select(cfg, f"data.{split}", default=None), str):
            raise ConfigError(f"{path}: 'data.{split}' (a path) moved to 'data.{split}.source'")


# ----------------------------------------------------------------------------------------- helpers
def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _split(batch: Dict[str, Any], size: int) -> Iterator[Dict[str, Any]]:
    """Chunks of ``size`` samples of a collated batch (tensors and lists sliced along the first axis)."""
    n = len(next(iter(batch.values())))
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in batch.items()}


# ----------------------------------------------------------------------------------------- trainer
class TrainerBase:
    """The training loop; subclasses supply the data, the model, the loss and the metrics (module docstring)."""

    config_schema: ClassVar[type] = TrainerConfig
    seeding: ClassVar[str] = "reseed"  # or "rank_offset" (module docstring: seeding)
    final_weights: ClassVar[Optional[str]] = None  # file in save_dir for the final EMA state dict

    def __init__(
        self, cfg: DictConfig, save_dir: str | Path, resume: str = "auto", dist_info: Optional[DistInfo] = None
    ):
        if single_process_from_multi_request():
            raise TrainingError(
                "accelerate launch started one process although --num_processes asks for more: "
                "it starts several only with --multi_gpu (also on a machine without GPUs: gloo "
                "on the CPU)"
            )
        self.cfg = cfg
        self.save_dir = Path(save_dir)
        self.checkpoints = self.checkpoint_series()
        self.resume = resume
        self.dist = dist_info or init_distributed()
        self.device = self.dist.device
        tc = cfg.train
        self.batch_per_rank, self.microbatch = check_train(tc, self.dist.world_size)
        self.amp_dtype = amp_dtype(tc.amp, self.device)
        self.step = 0

    # ------------------------------------------------------------------ hooks for subclasses
    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Value checks beyond the schema's types, ConfigError naming the key (here: the ``train:`` section)."""
        check_train(cfg.train, world_size=1)

    def checkpoint_series(self) -> CheckpointSeries:
        """Where the checkpoints go (default: ``save_dir``)."""
        return run_checkpoints(self.save_dir)

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
        whole split and all processes."""
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

    def degradation_config(self) -> DegradationConfig:
        """The config's ``degradation``: a DegradationConfig YAML path or an inline mapping."""
        node = self.cfg.degradation
        try:
            return load_degradation_config(resolve_path(node) if isinstance(node, str) else node)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"degradation: {err}") from None

    def face_dataset(self, split: str, **kwargs: Any) -> Optional[FaceDataset]:
        """``data.<split>`` as a :class:`data.datasets.FaceDataset` (None when the split is not configured);
        ``kwargs`` (e.g. ``degradation``) go to FaceDataset. Sample randomness is seeded by ``data.<split>.seed``,
        else ``train.seed``."""
        node = self.cfg.data.get(split)
        if node is None:
            return None
        source = resolve_path(node.source) if isinstance(node.source, str) else [resolve_path(p) for p in node.source]
        try:
            return FaceDataset(
                source,
                resolution=node.resolution,
                flip=node.flip,
                length=node.length,
                seed=self.cfg.train.seed if node.seed is None else node.seed,
                **kwargs,
            )
        except ConfigError:
            raise
        except FileNotFoundError as err:
            raise ConfigError(f"data.{split}.source: {err}; {override_hint(f'data.{split}.source')}") from None
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.{split}.source: {err}") from None

    def val_generator(self, batch_idx: int) -> torch.Generator:
        """A generator with a fixed seed per validation batch: the same noise at every validation.

        ``batch_idx`` is the batch's index in the whole split (:meth:`_validate`), so a face meets the
        same noise whatever the number of processes, and ``trainers.evaluate`` in one process reproduces
        a multi-process run's validation."""
        return torch.Generator(device=self.device).manual_seed(rank_seed(self.cfg.train.seed + 1, 0, batch_idx))

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ driver
    def train(self) -> int:
        """Run (or resume) training up to ``train.iterations``; returns the final step."""
        tc = self.cfg.train
        if self.seeding not in SEEDINGS:
            raise TypeError(f"{type(self).__name__}.seeding must be one of {SEEDINGS}, got {self.seeding!r}")
        _seed_all(tc.seed + (self.dist.rank if self.seeding == "rank_offset" else 0))
        self.build_extras()
        model = self.build_model().to(self.device)
        train_set = self.build_dataset("train")
        val_set = self.build_dataset("val")
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        ddp = (
            DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.is_distributed
            else model
        )  # copies rank 0's weights to every process
        ema = EMA(model, rate=tc.ema_rate)
        self._resume(model, ema, optimizer, scaler)
        self.checkpoints.check_start(self.step)
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)  # every process: sample_paths_rank{r}.txt
        except OSError as err:
            raise write_failure(self.save_dir, err) from None
        main_process_writes(
            self.dist,
            lambda: write_bytes_atomic(
                self.save_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(to_dict(self.cfg))).encode("utf-8")
            ),
        )
        if self.dist.is_main:
            print(
                f"{self.dist.world_size} process(es), mixed precision: "
                f"{'none' if self.amp_dtype is None else tc.amp} (train.amp: {tc.amp})",
                flush=True,
            )

        logger = TrainLogger(
            self.save_dir,
            total_steps=tc.iterations,
            start_step=self.step,
            is_main=self.dist.is_main,
            print_every=tc.log_freq,
        )
        data = iter(self._train_loader(train_set))
        paths_file = self.save_dir / f"sample_paths_rank{self.dist.rank}.txt" if tc.log_sample_paths else None
        try:
            while self.step < tc.iterations:
                self.step += 1
                batch = next(data)
                if paths_file is not None:
                    with open(paths_file, "a") as fh:
                        fh.writelines(f"{self.step}\t{p}\n" for p in batch["path"])
                scalars = all_reduce_mean(self._optimise(ddp, batch, optimizer, scaler), self.device)
                ema.update(model)
                if not all(np.isfinite(v) for v in scalars.values()):  # reduced: every process stops
                    raise TrainingError(f"non-finite training scalars at step {self.step}: {scalars}")
                logger.step(self.step, scalars)
                last = self.step == tc.iterations
                if val_set is not None and (self.step % tc.val_freq == 0 or last):
                    logger.scalars(self.step, self._validate(model, val_set), prefix="val")
                    logger.scalars(self.step, self._validate(ema.model, val_set), prefix="val_ema")
                if self.step % tc.save_freq == 0 or last:
                    save_training_state(
                        self.checkpoints,
                        self.step,
                        tc.keep_checkpoints,
                        self.dist,
                        model=model,
                        ema=ema,
                        optimizer=optimizer,
                        scaler=scaler,
                        config=to_dict(self.cfg),
                    )
        finally:
            logger.close()
        if self.final_weights:
            final = self.save_dir / self.final_weights
            main_process_writes(self.dist, lambda: save_checkpoint(final, ema.state_dict()))
            if self.dist.is_main:
                print(f"EMA weights of step {self.step}: {final}", flush=True)
        if self.dist.is_main:
            print(f"training finished at step {self.step}; checkpoints in {self.checkpoints.root}", flush=True)
        barrier()  # no process tears down its process group while another still writes or talks to it
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
    def _resume(self, model: nn.Module, ema: EMA, optimizer, scaler) -> None:
        """Load the checkpoint ``--resume`` names (if any) and set the step counter and the RNG streams."""
        ckpt = resume_state(self.checkpoints, self.resume, self.dist)
        restored = False
        if ckpt is not None:
            restored = restore_training_state(ckpt, self.dist, model=model, ema=ema, optimizer=optimizer, scaler=scaler)
            self.step = int(ckpt["step"])
            if self.dist.is_main:
                print(f"resuming from {ckpt['path']} at step {self.step}", flush=True)
        if not restored and (ckpt is not None or self.seeding == "reseed"):
            _seed_all(rank_seed(self.cfg.train.seed, self.dist.rank, self.step))

    def _train_loader(self, dataset: Dataset) -> DataLoader:
        with_epoch = hasattr(dataset, "set_epoch")
        if len(dataset) < self.batch_per_rank * self.dist.world_size:
            raise ConfigError(f"data.train: {len(dataset)} images, fewer than one batch (train.batch[0])")
        sampler = ShardedInfiniteSampler(
            len(dataset),
            self.dist.rank,
            self.dist.world_size,
            seed=self.cfg.train.seed,
            start=self.step * self.batch_per_rank,
            with_epoch=with_epoch,
        )
        dataset = EpochIndexed(dataset) if with_epoch else dataset
        workers = self.cfg.data.num_workers
        # own generator (worker seeds): creating the iterator must not consume the training RNG stream
        gen = torch.Generator().manual_seed(rank_seed(self.cfg.train.seed, self.dist.rank, self.step))
        return DataLoader(
            dataset,
            batch_size=self.batch_per_rank,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=workers > 0,
            generator=gen,
        )

    def _to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _optimise(self, ddp: nn.Module, batch: Dict[str, Any], optimizer, scaler) -> Dict[str, float]:
        tc = self.cfg.train
        for group in optimizer.param_groups:
            group["lr"] = lr_at(
                self.step,
                lr=tc.lr,
                total=tc.iterations,
                warmup=tc.warmup_iterations,
                schedule=tc.lr_schedule,
                min_lr=tc.min_lr,
            )
        optimizer.zero_grad(set_to_none=True)
        chunks = list(_split(self._to_device(batch), self.microbatch))
        totals: Dict[str, float] = {}
        for i, chunk in enumerate(chunks):
            sync = i == len(chunks) - 1 or not self.dist.is_distributed
            with contextlib.nullcontext() if sync else ddp.no_sync():
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
        """Indices (in the whole split) of this process's validation batches: the split is cut into
        batches of ``train.batch[1]`` consecutive faces and the batches are dealt to the processes in turn."""
        num_batches = -(-num_samples // self.cfg.train.batch[1])
        return list(range(self.dist.rank, num_batches, self.dist.world_size))

    @torch.no_grad()
    def _validate(self, model: nn.Module, dataset: Dataset) -> Dict[str, float]:
        size = self.cfg.train.batch[1]
        batches = self._val_batches(len(dataset))
        shard = Subset(dataset, [i for b in batches for i in range(b * size, min((b + 1) * size, len(dataset)))])
        loader = DataLoader(
            shard,
            batch_size=size,
            shuffle=False,
            num_workers=self.cfg.data.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        was_training = model.training
        model.eval()
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        sums: Dict[str, torch.Tensor] = {}
        count = zero.clone()
        for idx, batch in zip(batches, loader):
            with self.autocast():
                metrics = self.val_metrics(model, self._to_device(batch), idx)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v.detach().double().sum()
            count += next(iter(metrics.values())).numel()
        model.train(was_training)
        keys = broadcast_object(sorted(sums))  # process 0 always has a batch; another may have none
        packed = all_reduce_sum(torch.stack([sums.get(k, zero) for k in keys] + [count]))
        return {k: float(packed[i] / packed[-1]) for i, k in enumerate(keys)}


def trainer_class(cfg_path: str | Path, overrides: Sequence[str] = (), targets: Optional[Sequence[str]] = None) -> type:
    """The class named by the config's ``trainer.target`` (a :class:`TrainerBase` subclass, one of ``targets``
    if given); a key of the configs/train/ dialect is refused (:func:`refuse_moved_keys`)."""
    raw = load_config(cfg_path, overrides=list(overrides))
    refuse_moved_keys(raw, cfg_path)
    target = OmegaConf.select(raw, "trainer.target")
    if not isinstance(target, str):
        raise ConfigError(f"{cfg_path}: missing key 'trainer.target' (dotted trainer class path)")
    if targets is not None and target not in targets:
        raise ConfigError(f"{cfg_path}: trainer.target must be one of {list(targets)} for this script, got '{target}'")
    cls = get_obj_from_str(target)
    if not (isinstance(cls, type) and issubclass(cls, TrainerBase)):
        raise ConfigError(f"{cfg_path}: trainer.target '{target}' is not a TrainerBase subclass")
    return cls


def load_training_config(
    cfg_path: str | Path, overrides: Sequence[str] = (), targets: Optional[Sequence[str]] = None
) -> Tuple[type, DictConfig]:
    """(trainer class, validated config) of a training YAML with ``overrides``: :func:`trainer_class`, its
    ``config_schema``, no ``???`` left (:func:`utils.config.require_keys`) and its :meth:`TrainerBase.check`."""
    cls = trainer_class(cfg_path, overrides, targets)
    cfg = load_config(cfg_path, cls.config_schema, list(overrides))
    require_keys(cfg, cfg_path)
    try:
        cls.check(cfg)
    except ConfigError as err:
        raise ConfigError(f"{cfg_path}: {err}") from None
    return cls, cfg
