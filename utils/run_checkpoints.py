"""The checkpoints of a training run: naming, content, atomic writing, rotation and resume.

The training loop (``trainers/base.py``) keeps no checkpoint bookkeeping of its own; this module decides
where a checkpoint goes, what it holds and how a run continues from one.

* folder: ``--save_dir`` for main.py runs, ``<save_dir>/checkpoints`` for train_SDE.py / train_DBLM.py
  runs (whose ``<save_dir>`` also receives the exported ``ema_final.pth``); :func:`run_checkpoints`.
* naming: the checkpoint of step ``s`` is ``ckpt_{s:07d}.pth``. A name counts as a checkpoint only if
  it is exactly the name of its step (:meth:`CheckpointSeries.parse_step`), so ``ckpt_12.pth``,
  ``notes.txt`` or a temporary ``ckpt_0000012.pth.partial`` are never mistaken for one.
* content (:func:`save_training_state`, written by the main process): ``step``, ``model``, ``ema``,
  ``optimizer``, ``scaler``, ``config`` and ``rng``, the torch / numpy / python (/ CUDA) RNG states of
  every process, gathered; only tensors, numbers, strings and lists, so a checkpoint loads with
  ``torch.load(weights_only=True)``. :func:`restore_training_state` puts them back; each process restores
  its own RNG state when the number of processes is unchanged (else the loop reseeds).
* completeness: a checkpoint is written under the temporary name ``<name>.partial`` and renamed to its
  final name only once complete (:meth:`~CheckpointSeries.write`). Hence every file with a checkpoint
  name is complete, and a crash leaves at most a ``.partial`` file, which is ignored and replaced by the
  next write of that step.
* latest: :meth:`~CheckpointSeries.latest` is the complete checkpoint with the largest step.
* rotation: :meth:`~CheckpointSeries.rotate` keeps the ``keep`` newest complete checkpoints (by step)
  and deletes the older ones; ``keep <= 0`` keeps all. Other entries of the folder are never touched.
* resume (:func:`resume_state`, collective: the main process decides, every process reads the chosen file):
  ``--resume auto`` continues from the newest *readable* checkpoint; a newer one that cannot be read is
  named in one line and renamed ``<name>.corrupt`` beside itself, so it is kept but no longer counts
  (none readable: the run starts at step 0). ``--resume none`` starts afresh. ``--resume PATH`` continues
  from that checkpoint file, which must be readable (:class:`ResumeError` if it is no checkpoint file);
  the run's checkpoints of later steps, which would belong to the abandoned continuation, are renamed
  ``<name>.superseded`` (one line each). A renamed entry never overwrites an earlier one (``.1``, ...).
* no mixing of runs: :meth:`~CheckpointSeries.check_start` refuses a run that starts at step ``s`` in a
  folder that already holds checkpoints of steps beyond ``s``; such older checkpoints would outrank the
  new run's in rotation (deleting the new ones) and in ``--resume auto``. After the resume rules above,
  only ``--resume none`` in a folder holding checkpoints can meet it: the refusal protects a run whose
  checkpoints are all there unless a checkpoint file is named explicitly.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from utils.checkpoint import CheckpointError, load_checkpoint, unreadable
from utils.distributed import DistInfo, all_gather_object, broadcast_object
from utils.image_io import DiskWriteError, write_failure

STEP_DIGITS = 7  # the step is zero-padded to (at least) this many digits
TEMPORARY_SUFFIX = ".partial"  # appended to a checkpoint's name while it is being written
CORRUPT_SUFFIX = ".corrupt"  # appended to an unreadable checkpoint that --resume auto passed over
SUPERSEDED_SUFFIX = ".superseded"  # appended to a later checkpoint left behind by --resume PATH
RESUME_AUTO, RESUME_NONE = "auto", "none"


class MixedRunsError(CheckpointError):
    """The folder holds checkpoints of another run, newer than the step this run starts at."""


class ResumeError(CheckpointError):
    """``--resume`` names no checkpoint file; ``resume`` is the argument as given."""

    def __init__(self, resume: str, message: str):
        super().__init__(message)
        self.resume = resume


@dataclass(frozen=True)
class CheckpointSeries:
    """The checkpoints of one run: files ``root/<prefix><step:07d><suffix>`` (module docstring)."""

    root: Path
    prefix: str = "ckpt_"
    suffix: str = ".pth"

    # ------------------------------------------------------------------ naming
    def name(self, step: int) -> str:
        """The file name of the checkpoint of ``step`` (a non-negative integer)."""
        if step < 0:
            raise ValueError(f"a checkpoint step must be >= 0, got {step}")
        return f"{self.prefix}{step:0{STEP_DIGITS}d}{self.suffix}"

    def parse_step(self, name: str) -> Optional[int]:
        """The step whose checkpoint is called ``name``, or None if ``name`` is not such a name."""
        if len(name) <= len(self.prefix) + len(self.suffix):
            return None
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return None
        digits = name[len(self.prefix) : len(name) - len(self.suffix)]
        if not (digits.isascii() and digits.isdigit()):
            return None
        step = int(digits)
        return step if self.name(step) == name else None

    def path(self, step: int) -> Path:
        return self.root / self.name(step)

    def temporary_path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` is written before it is complete."""
        return self.root / (self.name(step) + TEMPORARY_SUFFIX)

    # ------------------------------------------------------------------ listing
    def entries(self) -> List[Tuple[int, Path]]:
        """(step, path) of the complete checkpoints under ``root``, by step; empty if ``root`` does not exist."""
        if not self.root.is_dir():
            return []
        return sorted(
            (self.parse_step(path.name), path)
            for path in self.root.iterdir()
            if path.is_file() and self.parse_step(path.name) is not None
        )

    def steps(self) -> List[int]:
        """Steps of the complete checkpoints under ``root``, ascending."""
        return sorted({step for step, _ in self.entries()})

    def latest(self) -> Optional[Path]:
        """The complete checkpoint with the largest step (a file if there are both), or None."""
        entries = self.entries()
        return next(path for step, path in entries if step == entries[-1][0]) if entries else None

    # ------------------------------------------------------------------ writing
    def write(self, step: int, writer: Callable[[Path], None]) -> Path:
        """Write the checkpoint of ``step`` atomically: ``writer(path)`` creates the file at a temporary
        path (a stale one left by a crash is replaced), which is renamed when ``writer`` returns. If
        ``writer`` raises, the temporary file is removed and the error propagates, as a
        :class:`~utils.image_io.DiskWriteError` naming the checkpoint when the OS refused the write (a full
        disk, a read-only folder): no partial checkpoint is left."""
        temporary, final = self.temporary_path(step), self.path(step)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            temporary.unlink(missing_ok=True)
            writer(temporary)
            os.replace(temporary, final)
        except BaseException as err:
            if temporary.exists():
                temporary.unlink()
            failure = write_failure(final, err)
            if failure is None:
                raise
            raise failure from None
        return final

    def rotate(self, keep: int) -> List[Path]:
        """Delete all but the ``keep`` newest complete checkpoints (``keep <= 0``: delete none);
        returns the deleted paths."""
        if keep <= 0:
            return []
        kept = set(self.steps()[-keep:])
        old = [path for step, path in self.entries() if step not in kept]
        for path in old:
            path.unlink(missing_ok=True)
        return old

    # ------------------------------------------------------------------ resuming
    def resolve_resume(self, resume: str) -> Optional[Path]:
        """The checkpoint that ``--resume resume`` names, ``resume`` not ``auto`` (:meth:`newest_readable`):
        ``none`` None, otherwise that path, which must be an existing file; :class:`ResumeError` if it is not."""
        if resume == RESUME_AUTO:
            raise ValueError("resolve_resume does not take 'auto': newest_readable chooses that checkpoint")
        if resume == RESUME_NONE:
            return None
        if not resume:
            raise ResumeError(resume, f"--resume takes '{RESUME_AUTO}', '{RESUME_NONE}' or a checkpoint file")
        path = Path(resume)
        if not path.is_file():
            raise ResumeError(resume, f"--resume {resume}: no checkpoint file there")
        return path

    def set_aside(self, path: Path, suffix: str) -> Path:
        """Rename the checkpoint ``path`` to ``<name><suffix>`` beside itself (``<name><suffix>.1``, ... if
        taken) so that it no longer counts; returns the new path."""
        target = path.with_name(path.name + suffix)
        number = 0
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}{suffix}.{number}")
        path.rename(target)
        return target

    def newest_readable(
        self, read: Callable[[Path], Dict[str, Any]], note: Callable[[str], None]
    ) -> Optional[Dict[str, Any]]:
        """``read(path)`` of the newest checkpoint it can read; each newer one that raises
        :class:`CheckpointError` is renamed ``<name>.corrupt`` (:meth:`set_aside`) and named in one ``note``.
        None when no checkpoint is readable."""
        for _, path in reversed(self.entries()):
            try:
                return read(path)
            except CheckpointError as err:
                moved = self.set_aside(path, CORRUPT_SUFFIX)
                note(f"{err}; renamed to {moved.name}, trying the previous checkpoint")
        return None

    def supersede_after(self, step: int, note: Callable[[str], None]) -> None:
        """Rename the checkpoints of steps after ``step`` to ``<name>.superseded``, one ``note`` each."""
        for later_step, path in self.entries():
            if later_step > step:
                moved = self.set_aside(path, SUPERSEDED_SUFFIX)
                note(f"{path}: step {later_step} is after the resumed step {step}; renamed to {moved.name}")

    def check_start(self, step: int) -> None:
        """Raise :class:`MixedRunsError` if ``root`` holds complete checkpoints of steps after ``step``,
        the step the run starts (or resumes) at (module docstring: no mixing of runs)."""
        later = [s for s in self.steps() if s > step]
        if later:
            raise MixedRunsError(
                f"{self.root} already holds checkpoints of steps {later}, after this run's start "
                f"at step {step}: continue that run with --resume auto (or from one of its "
                "checkpoints with --resume PATH), or train into an empty folder"
            )


def run_checkpoints(folder: str | os.PathLike) -> CheckpointSeries:
    """The checkpoints of a run whose checkpoint folder is ``folder``: files ``ckpt_{step:07d}.pth``."""
    return CheckpointSeries(Path(folder))


# ---------------------------------------------------------------------------------------------- content
def rng_state() -> Dict[str, Any]:
    """This process's torch / numpy / python (/ CUDA) RNG states as tensors, numbers and lists only, so
    a checkpoint stays loadable with ``torch.load(weights_only=True)``."""
    version, words, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": version, "words": list(words), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["words"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_training_state(
    series: CheckpointSeries, step: int, keep: int, dist: DistInfo, *, model, ema, optimizer, scaler, config: dict
) -> None:
    """Write the checkpoint of ``step`` (module docstring: content) and keep the ``keep`` newest.
    Collective: every process calls it (each contributes its RNG state), the main process writes."""
    rng = all_gather_object(rng_state())

    def write() -> None:
        state = {
            "step": step,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "config": config,
        }
        series.write(step, lambda path: _torch_save(state, path))
        series.rotate(keep)

    main_process_writes(dist, write)


def _torch_save(state: Dict[str, Any], path: Path) -> None:
    """``torch.save`` through a Python file, so that a refused write surfaces as the OS's OSError."""
    with open(path, "wb") as handle:
        torch.save(state, handle)


def main_process_writes(dist: DistInfo, write: Callable[[], None]) -> None:
    """Run ``write`` on the main process; a :class:`~utils.image_io.DiskWriteError` there is raised on
    every process, so that none waits for the others. Collective."""
    message = None
    if dist.is_main:
        try:
            write()
        except DiskWriteError as err:
            message = str(err)
    message = broadcast_object(message)
    if message is not None:
        raise DiskWriteError(message)


def read_training_state(path: Path) -> Dict[str, Any]:
    """The content of a checkpoint file; CheckpointError naming the file if it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported with the file name
        raise unreadable(path, err) from None
    return {**state, "path": str(path)}


def resume_state(series: CheckpointSeries, resume: str, dist: DistInfo) -> Optional[Dict[str, Any]]:
    """The :func:`read_training_state` content that ``--resume resume`` asks for, or None to start at step 0
    (module docstring: resume). Collective: the main process picks the checkpoint, renaming what the rules
    rename and printing one line each; every process then reads that file."""
    state, error = None, None
    if dist.is_main:
        try:
            state = _pick_resume(series, resume)
        except CheckpointError as err:
            error = err
    path, message = broadcast_object((None if state is None else state["path"], None if error is None else str(error)))
    if error is not None:
        raise error
    if message is not None:
        raise CheckpointError(message)
    return state if state is not None or path is None else read_training_state(Path(path))


def _pick_resume(series: CheckpointSeries, resume: str) -> Optional[Dict[str, Any]]:
    """The main process's part of :func:`resume_state`."""

    def note(message: str) -> None:
        print(message, flush=True)

    if resume == RESUME_AUTO:
        return series.newest_readable(read_training_state, note)
    path = series.resolve_resume(resume)
    if path is None:
        return None
    state = read_training_state(path)
    series.supersede_after(int(state["step"]), note)
    return state


def restore_training_state(ckpt: Dict[str, Any], dist: DistInfo, *, model, ema, optimizer, scaler) -> bool:
    """Load a :func:`read_training_state` result into the run; returns whether this process's RNG
    state was restored (only when the number of processes is the one that wrote it)."""
    try:
        load_checkpoint(model, ckpt["model"])
        load_checkpoint(ema.model, ckpt["ema"])
    except CheckpointError as err:
        raise CheckpointError(f"--resume {ckpt['path']}: {err}") from None
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    states = ckpt.get("rng") or []
    if len(states) != dist.world_size:
        return False
    set_rng_state(states[dist.rank])
    return True
