"""trainers/restorer.py: the configured loss (L1 or L2 on [0, 1]) against a float64 reference, and a clear
error for an unknown one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.restorer import TrainerRestorer
from utils.config import ConfigError, load_config
from utils.distributed import DistInfo

TINY = Path(__file__).resolve().parents[1] / "configs/training/tiny/swinir_tiny.yaml"


def _trainer(tmp_path, loss):
    cfg = load_config(TINY, TrainerRestorer.config_schema, [f"loss={loss}"])
    return TrainerRestorer(cfg, tmp_path, dist_info=DistInfo(0, 1, 0, torch.device("cpu")))


@pytest.mark.parametrize("loss, reference", [("l1", lambda d: d.abs().mean()), ("l2", lambda d: (d * d).mean())])
def test_loss_matches_float64_reference(tmp_path, loss, reference):
    trainer = _trainer(tmp_path, loss)
    trainer.build_extras()
    torch.manual_seed(0)
    model = trainer.build_model()
    batch = {"lq": torch.rand(2, 3, 16, 16) * 2 - 1, "hq": torch.rand(2, 3, 16, 16) * 2 - 1}
    value, scalars = trainer.compute_loss(model, batch)
    with torch.no_grad():
        diff = model(((batch["lq"] + 1) / 2)).double() - ((batch["hq"].double() + 1) / 2)
    assert float(value.detach()) == pytest.approx(float(reference(diff)), rel=1e-5)
    assert list(scalars) == [loss]


def test_unknown_loss_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"loss must be one of \['l1', 'l2'\], got 'l3'"):
        _trainer(tmp_path, "l3").build_extras()
