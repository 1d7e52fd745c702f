"""The command line of every training script: main.py, train_SDE.py and train_DBLM.py (docs/method.md section 11).

    SCRIPT --config X.yaml [--save_dir DIR] [--resume auto|none|PATH] [--seed N] [key=value ...]

``--cfg_path`` is another name of ``--config``. A relative config path, and each relative input path in the
config (data, weights, degradation), is taken from the working directory if it exists there, else from the
repository (:func:`utils.model_factory.resolve_path`); ``--save_dir`` (default ``experiments/<config name>``) is
relative to the working directory.
``key=value`` arguments are OmegaConf dot-list overrides and may come before or after the options; a key the
config leaves ``???`` is named with the override that gives it; ``--seed N`` is the override ``train.seed=N``.
The config's ``trainer.target`` names the trainer (:func:`trainers.base.load_training_config`); train_SDE.py and
train_DBLM.py accept only their networks' trainers. ``--resume auto`` (the default) continues from the newest
readable checkpoint of the run's folder, ``--resume PATH`` from that checkpoint file, ``--resume none`` starts
afresh (:mod:`utils.run_checkpoints`).
A bad configuration, checkpoint or launch prints one line ``SCRIPT: error: ...`` (once, by the first
process) and exits with status 2; a file the OS refuses to write (a full disk, a read-only folder) likewise, naming
the file and the OS's reason, with status 1 (earlier checkpoints and outputs stay as they were).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from trainers.base import TrainerBase, TrainingError, load_training_config
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.distributed import cleanup_distributed, launched_rank
from utils.image_io import DiskWriteError
from utils.model_factory import resolve_path

EXIT_CONFIG_ERROR = 2
EXIT_WRITE_ERROR = 1


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options of a training script (module docstring)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", "--cfg_path", dest="config", required=True, help="training YAML")
    parser.add_argument(
        "--save_dir",
        default=None,
        help="folder for checkpoints, logs and tensorboard (default: experiments/<config name>)",
    )
    parser.add_argument(
        "--resume",
        default="auto",
        help="'auto' (newest checkpoint of the run's folder, if any), 'none', or a checkpoint file",
    )
    parser.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.iterations=1000")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line, overrides anywhere; ``--seed`` joins the overrides as ``train.seed``; ``--config``
    as given if it exists, else relative to the repository (:func:`utils.model_factory.resolve_path`)."""
    args = parser.parse_intermixed_args(None if argv is None else list(argv))
    if args.save_dir is None:
        args.save_dir = str(Path("experiments") / Path(args.config).stem)
    args.config = str(resolve_path(args.config))
    if args.seed is not None:
        args.overrides.append(f"train.seed={args.seed}")
    return args


def make_trainer(args: argparse.Namespace, targets: Optional[Sequence[str]] = None) -> TrainerBase:
    """The trainer of the parsed command line, its class one of ``targets`` if given."""
    cls, cfg = load_training_config(args.config, args.overrides, targets)
    return cls(cfg, args.save_dir, args.resume)


def main(
    argv: Optional[Sequence[str]], parser: argparse.ArgumentParser, targets: Optional[Sequence[str]] = None
) -> int:
    """Parse ``argv``, build the trainer (:func:`make_trainer`) and train; 0, or 2 after one line
    on a bad configuration, checkpoint or launch, 1 after one line on a refused write."""
    args = parse_args(parser, argv)
    try:
        make_trainer(args, targets).train()
    except (ConfigError, CheckpointError, TrainingError, DiskWriteError) as err:
        if launched_rank() == 0:  # every process meets the same error: say it once
            print(f"{parser.prog}: error: {err}", file=sys.stderr, flush=True)
        return EXIT_WRITE_ERROR if isinstance(err, DiskWriteError) else EXIT_CONFIG_ERROR
    finally:
        cleanup_distributed()
    return 0
