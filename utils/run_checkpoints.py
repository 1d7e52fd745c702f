"""Where a training run keeps its checkpoints: naming, listing, atomic writing, rotation and resume.

Both training launchers use this module and keep no checkpoint bookkeeping of their own:

* ``trainers/base.py`` (torchrun, ``main.py``): one file per checkpoint, ``<save_dir>/ckpt_{step:07d}.pth``
  (:func:`torchrun_checkpoints`);
* ``DiffBIR/training.py`` (accelerate, ``train_SDE.py`` / ``train_DBLM.py``): one directory per
  checkpoint, ``<save_dir>/checkpoints/step_{step:07d}``, filled by ``accelerator.save_state``
  (:func:`accelerate_checkpoints`).

What is stored in a checkpoint is the launcher's business; this module only decides where it goes.
The contract of a :class:`CheckpointSeries` (the checkpoints of one run):

* naming: the checkpoint of step ``s`` is ``prefix + f"{s:07d}" + suffix``. A name counts as a
  checkpoint only if it is exactly the name of its step (:meth:`CheckpointSeries.parse_step`), so
  ``ckpt_12.pth``, ``notes.txt`` or a temporary ``ckpt_0000012.pth.partial`` are never mistaken for one.
* completeness: a checkpoint is written under the temporary name ``<name>.partial`` and renamed to its
  final name only once complete (:meth:`~CheckpointSeries.write`, or :meth:`~CheckpointSeries.prepare`
  then :meth:`~CheckpointSeries.commit` when several processes fill one directory). Hence every entry
  with a checkpoint name and the right kind (a file, or a directory) is complete, and a crash leaves
  at most a ``.partial`` entry, which is ignored and replaced by the next write of that step.
* latest: :meth:`~CheckpointSeries.latest` is the complete checkpoint with the largest step.
* rotation: :meth:`~CheckpointSeries.rotate` keeps the ``keep`` newest complete checkpoints (by step)
  and deletes the older ones; ``keep <= 0`` keeps all. Other entries of the folder are never touched.
* resume: :meth:`~CheckpointSeries.resolve_resume` turns the ``--resume`` argument into the checkpoint
  to load: ``auto`` the latest (None when there is none yet), ``none`` None, anything else that path,
  which must be a checkpoint of the right kind; otherwise :class:`ResumeError`, which each launcher
  reports as its own error type with its own message.
* no mixing of runs: :meth:`~CheckpointSeries.check_start` refuses a run that starts at step ``s`` (0 for
  ``--resume none``) in a folder that already holds checkpoints of steps beyond ``s``. Such older
  checkpoints would outrank the new run's in rotation (deleting the new ones) and in ``--resume auto``.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

STEP_DIGITS = 7  # the step is zero-padded to (at least) this many digits
TEMPORARY_SUFFIX = ".partial"  # appended to a checkpoint's name while it is being written
RESUME_AUTO, RESUME_NONE = "auto", "none"


class MixedRunsError(ValueError):
    """The folder holds checkpoints of another run, newer than the step this run starts at."""


class ResumeError(ValueError):
    """``--resume`` names no checkpoint of the expected kind; ``resume`` is the argument as given."""

    def __init__(self, resume: str, message: str):
        super().__init__(message)
        self.resume = resume


def remove(path: Path) -> None:
    """Delete a file or a directory tree; nothing if it does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CheckpointSeries:
    """The checkpoints of one run: entries ``root/<prefix><step:07d><suffix>`` (module docstring).

    ``directories`` says whether each checkpoint is a directory (True) or a single file (False).
    """

    root: Path
    prefix: str
    suffix: str = ""
    directories: bool = False

    # ------------------------------------------------------------------ naming
    def name(self, step: int) -> str:
        """The entry name of the checkpoint of ``step`` (a non-negative integer)."""
        if step < 0:
            raise ValueError(f"a checkpoint step must be >= 0, got {step}")
        return f"{self.prefix}{step:0{STEP_DIGITS}d}{self.suffix}"

    def parse_step(self, name: str) -> Optional[int]:
        """The step whose checkpoint is called ``name``, or None if ``name`` is not such a name."""
        if len(name) <= len(self.prefix) + len(self.suffix):
            return None
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return None
        digits = name[len(self.prefix):len(name) - len(self.suffix)]
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
    def is_complete(self, path: Path) -> bool:
        """Whether ``path`` exists as a checkpoint of this series' kind (a directory or a file)."""
        return path.is_dir() if self.directories else path.is_file()

    def steps(self) -> List[int]:
        """Steps of the complete checkpoints under ``root``, ascending (empty if ``root`` does not exist)."""
        if not self.root.is_dir():
            return []
        found = ((self.parse_step(p.name), p) for p in self.root.iterdir())
        return sorted(step for step, p in found if step is not None and self.is_complete(p))

    def latest(self) -> Optional[Path]:
        """The complete checkpoint with the largest step, or None."""
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    # ------------------------------------------------------------------ writing
    def prepare(self, step: int) -> Path:
        """Create ``root``, remove a stale temporary entry of ``step`` and return the temporary path."""
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.temporary_path(step)
        remove(temporary)
        return temporary

    def commit(self, step: int) -> Path:
        """Rename the finished temporary entry of ``step`` to its final name (replacing an existing
        checkpoint of that step) and return the final path."""
        final = self.path(step)
        if final.is_dir():  # os.replace replaces a file atomically, but not a non-empty directory
            remove(final)
        os.replace(self.temporary_path(step), final)
        return final

    def write(self, step: int, writer: Callable[[Path], None]) -> Path:
        """Write the checkpoint of ``step`` atomically: ``writer(path)`` creates the file (or directory)
        at a temporary path, which is renamed when ``writer`` returns. If ``writer`` raises, the
        temporary entry is removed and the error propagates: no partial checkpoint is left."""
        temporary = self.prepare(step)
        try:
            writer(temporary)
        except BaseException:
            remove(temporary)
            raise
        return self.commit(step)

    def rotate(self, keep: int) -> List[Path]:
        """Delete all but the ``keep`` newest complete checkpoints (``keep <= 0``: delete none);
        returns the deleted paths."""
        if keep <= 0:
            return []
        old = [self.path(step) for step in self.steps()[:-keep]]
        for path in old:
            remove(path)
        return old

    # ------------------------------------------------------------------ resuming
    def resolve_resume(self, resume: str) -> Optional[Path]:
        """The checkpoint that ``--resume resume`` asks for: ``auto`` the latest (None before the first
        checkpoint), ``none`` None, otherwise that path, which must be an existing file (directory for
        a series of directories); :class:`ResumeError` if it is not."""
        if resume == RESUME_NONE:
            return None
        if resume == RESUME_AUTO:
            return self.latest()
        kind = "directory" if self.directories else "file"
        if not resume:
            raise ResumeError(resume, f"--resume takes '{RESUME_AUTO}', '{RESUME_NONE}' or a checkpoint {kind}")
        path = Path(resume)
        if not self.is_complete(path):
            raise ResumeError(resume, f"--resume {resume}: no checkpoint {kind} there")
        return path

    def check_start(self, step: int) -> None:
        """Raise :class:`MixedRunsError` if ``root`` holds complete checkpoints of steps after ``step``,
        the step the run starts (or resumes) at (module docstring: no mixing of runs)."""
        later = [s for s in self.steps() if s > step]
        if later:
            raise MixedRunsError(f"{self.root} already holds checkpoints of steps {later}, after this run's start "
                                 f"at step {step}: continue that run with --resume auto, or train into an "
                                 "empty folder")


def torchrun_checkpoints(save_dir: str | os.PathLike) -> CheckpointSeries:
    """The checkpoints of a ``trainers/base.py`` run: files ``<save_dir>/ckpt_{step:07d}.pth``."""
    return CheckpointSeries(Path(save_dir), prefix="ckpt_", suffix=".pth")


def accelerate_checkpoints(save_dir: str | os.PathLike) -> CheckpointSeries:
    """The checkpoints of a ``DiffBIR/training.py`` run: ``accelerator.save_state`` directories
    ``<save_dir>/checkpoints/step_{step:07d}``."""
    return CheckpointSeries(Path(save_dir) / "checkpoints", prefix="step_", directories=True)
