"""TrainerSDE: the DBLM standard-deviation estimator SDE (docs/method.md section 4.1; DiffBIR/sde.py).

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml

Loss: l1 (or l2) between log sigma_hat(y) and log(sigma* + eps), eps = ``log_eps_512`` in 512-px units.
Validation: ``sigma_mae_px``, |sigma_hat - sigma*| in pixels at the training resolution. Data, model and
outputs: :class:`trainers.dblm.DBLMTrainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers.dblm import DBLMConfig, DBLMTrainer, LossType, image_loss


@dataclass
class SDEConfig(DBLMConfig):
    loss: LossType = LossType.l1
    log_eps_512: float = 0.1  # eps of log(sigma* + eps), 512-px units


class TrainerSDE(DBLMTrainer):
    config_schema = SDEConfig

    def compute_loss(self, model, batch):
        log_sigma = model(batch["lq"], log=True)
        target = torch.log(batch["sigma_star"] + self.px(self.cfg.log_eps_512))
        loss = image_loss(self.cfg.loss, log_sigma.float(), target)
        mae = (log_sigma.detach().float() - target).abs().mean()
        return loss, {"loss": float(loss.detach()), "log_sigma_mae": float(mae)}

    def val_metrics(self, model, batch, batch_idx):
        return {"sigma_mae_px": (model(batch["lq"]).float() - batch["sigma_star"]).abs()}
