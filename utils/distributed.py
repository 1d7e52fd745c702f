"""Process groups for training (trainers/base.py) and inference_difface.py.

:func:`init_distributed`: NCCL (CUDA) or gloo from ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, nothing for one
process. :class:`ShardedInfiniteSampler`: epoch e is a permutation seeded by ``seed + epoch`` cut into disjoint
shards, so a run resumes at offset s * b with no saved state.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the launcher's process group (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        kwargs = {"device_id": device} if use_cuda else {}
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", **kwargs)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def launched_rank() -> int:
    """This process's rank as its launcher (torchrun, ``accelerate launch``) set it; 0 without one. Known
    before any process group exists, e.g. to print a configuration error once rather than once per rank."""
    return int(os.environ.get("RANK", "0"))


def single_process_from_multi_request() -> bool:
    """Whether ``accelerate launch --num_processes N`` (N > 1) started this one process alone: its simple
    launcher (used without ``--multi_gpu``) sets ``MASTER_ADDR`` for N > 1 but starts one process with no
    ``WORLD_SIZE``."""
    return "ACCELERATE_USE_CPU" in os.environ and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ


def cleanup_distributed() -> None:
    """Destroy the process group while the interpreter is fully alive, after freeing unreachable DDP reducers
    and their pending work (gloo's threads must not hold tensors into interpreter finalization)."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over ranks (a copy; identity without a process group)."""
    values = values.clone()
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_mean(scalars: Dict[str, float], device: torch.device) -> Dict[str, float]:
    """Mean of each scalar over ranks (every rank must pass the same keys)."""
    if not dist.is_initialized() or not scalars:
        return dict(scalars)
    keys = sorted(scalars)
    packed = torch.tensor([float(scalars[k]) for k in keys], dtype=torch.float64, device=device)
    packed = all_reduce_sum(packed) / dist.get_world_size()
    return dict(zip(keys, packed.tolist()))


def all_gather_object(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A 32-bit seed for (``seed``, ``rank``, ``step``): independent streams per rank and per restart."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1)[0])


class ShardedInfiniteSampler(Sampler[int]):
    """Endless, rank-disjoint, resumable stream of dataset indices (see the module docstring)."""

    def __init__(
        self,
        num_samples: int,
        rank: int,
        world_size: int,
        seed: int = 0,
        shuffle: bool = True,
        start: int = 0,
        with_epoch: bool = False,
    ):
        if num_samples < world_size:
            raise ValueError(f"dataset has {num_samples} samples, fewer than the {world_size} ranks")
        self.num_samples = num_samples
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.start = start
        self.with_epoch = with_epoch
        self.per_rank = num_samples // world_size

    def _shard(self, epoch: int) -> List[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            order = list(range(self.num_samples))
        return order[: self.per_rank * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            base = epoch * self.num_samples if self.with_epoch else 0
            for index in self._shard(epoch)[offset:]:
                yield base + index
            epoch, offset = epoch + 1, 0


class EpochIndexed(Dataset):
    """Wraps a dataset with ``set_epoch``: item ``epoch * len + index`` is item ``index`` of ``epoch``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int):
        epoch, index = divmod(int(key), len(self.dataset))
        self.dataset.set_epoch(epoch)
        return self.dataset[index]
