"""The first training losses of the six shipped demo configs: fixed seed, CPU, one process.

    python tests/demo_losses.py --write      # (re)record tests/demo_losses.json
    python tests/demo_losses.py sde tm     # print the losses of a fresh run

Each network (the prior, RM0, SDE, TM, RM and DGSA) is trained for ``STEPS`` steps from its demo config
with the batch, the validation split and the data workers made small (:data:`RUNS`); everything else
(model, data, degradation, loss, optimiser, mixed precision, seed) is the demo config's own. The
per-step training loss is read back from the run's tensorboard log. tests/test_demo_losses.py checks
that the training loop still reproduces the recording, so a refactor of the loop cannot silently change
what the shipped configs train.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from proc_helpers import run_checked

STEPS = 20
FIXTURE = Path(__file__).with_name("demo_losses.json")
SMALL = ["train.batch=[2,2]", "data.val.length=2", "data.num_workers=0"]

# network: (script, config, tensorboard tag of the training loss, overrides)
RUNS = {
    "prior": ("main.py", "configs/training/diffusion_demo64.yaml", "train/loss", SMALL),
    "rm0": ("main.py", "configs/training/swinir_demo64.yaml", "train/l1", SMALL),
    "sde": ("train_SDE.py", "configs/train/train_SDE_demo64.yaml", "train/loss", SMALL),
    "tm": ("train_DBLM.py", "configs/train/train_DBLM_TM_demo64.yaml", "train/loss", SMALL),
    "rm": ("train_DBLM.py", "configs/train/train_DBLM_RM_demo64.yaml", "train/loss", SMALL),
    "dgsa": ("main.py", "configs/training/uncertainty_demo64.yaml", "train/nll", SMALL),
}


def command(network: str, save_dir: Path, steps: int = STEPS, validate: bool = True) -> List[str]:
    """The one-process training command of ``network`` for ``steps`` steps, writing into ``save_dir``.

    Every demo config warms its learning rate up over more than STEPS steps (or keeps it constant), and
    the learning rate of a warm-up step does not depend on the run's length: a shorter run's losses are
    the first ones of a longer run's. Validation runs after the last step only, so it changes no training
    loss; ``validate=False`` skips it (``data.val=null``)."""
    script, config, _, overrides = RUNS[network]
    if not validate:
        overrides = [o for o in overrides if not o.startswith("data.val")] + ["data.val=null"]
    return [
        sys.executable,
        script,
        "--config",
        config,
        "--save_dir",
        str(save_dir),
        "--resume",
        "none",
        f"train.iterations={steps}",
        *overrides,
    ]


def tensorboard_scalars(log_dir: Path, tag: str) -> List[float]:
    """The values of ``tag`` in a tensorboard log folder, in step order (one per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [event.value for event in sorted(acc.Scalars(tag), key=lambda e: e.step)]


def machine() -> Dict[str, str]:
    """What the losses depend on beyond the code: the torch version and the CPU kernels it picks."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def train_losses(network: str, steps: int = STEPS, validate: bool = True) -> List[float]:
    """Run ``network``'s demo training for ``steps`` steps and return its per-step training losses."""
    with tempfile.TemporaryDirectory() as tmp:
        save_dir = Path(tmp) / network
        run_checked(command(network, save_dir, steps, validate), timeout=3600)
        return tensorboard_scalars(save_dir / "tb", RUNS[network][2])


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"record into {FIXTURE.name}")
    parser.add_argument("networks", nargs="*", default=list(RUNS), help="subset of " + ", ".join(RUNS))
    args = parser.parse_args(argv)
    for name in args.networks:
        values = train_losses(name)
        print(name, " ".join(f"{v:.6g}" for v in values), flush=True)
        if args.write:  # after each network: a long recording keeps what it has
            recorded = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {}
            recorded.update({"command": "python tests/demo_losses.py --write", "steps": STEPS, **machine()})
            recorded.setdefault("losses", {})[name] = values
            FIXTURE.write_text(json.dumps(recorded, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
