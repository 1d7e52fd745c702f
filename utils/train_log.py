"""Training log: scalars to tensorboard (``<save_dir>/tb``) and every ``print_every`` steps one console line, main
process only; a tqdm bar shows progress on a terminal. A run resumed at ``start_step`` purges the events logged
after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from tqdm import tqdm


class TrainLogger:
    def __init__(
        self, save_dir: str | Path, total_steps: int, start_step: int = 0, is_main: bool = True, print_every: int = 10
    ):
        self.is_main = is_main
        self.print_every = max(1, int(print_every))
        self._writer = None
        self._bar: Optional[tqdm] = None
        if is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                log_dir=str(Path(save_dir) / "tb"), purge_step=start_step + 1 if start_step else None
            )
            # disable=None: no bar unless stderr is a terminal, so a log holds the printed lines only
            self._bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, desc="train", disable=None)

    def step(self, step: int, scalars: Dict[str, float], prefix: str = "train") -> None:
        """Record ``scalars`` at ``step`` and advance the bar by one."""
        if not self.is_main:
            return
        for key, value in scalars.items():
            self._writer.add_scalar(f"{prefix}/{key}", float(value), step)
        self._bar.update(1)
        self._bar.set_postfix({k: f"{float(v):.4g}" for k, v in scalars.items()})
        if step % self.print_every == 0:
            self.print(step, scalars, prefix)

    def scalars(self, step: int, scalars: Dict[str, float], prefix: str = "val") -> None:
        """Record ``scalars`` (e.g. validation metrics) and always print them."""
        if not self.is_main:
            return
        for key, value in scalars.items():
            self._writer.add_scalar(f"{prefix}/{key}", float(value), step)
        self.print(step, scalars, prefix)

    def print(self, step: int, scalars: Dict[str, float], prefix: str) -> None:
        if not self.is_main:
            return
        body = "  ".join(f"{k}={float(v):.5g}" for k, v in scalars.items())
        tqdm.write(f"[{prefix}] step {step}: {body}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
