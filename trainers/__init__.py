"""torchrun trainers run by main.py; a config names one in ``trainer.target``:

* ``trainers.diffusion.TrainerDiffusion``: the face diffusion prior (improved-diffusion losses).
* ``trainers.restorer.TrainerRestorer``: the RM0 SwinIR restorer (L1 on blindly degraded pairs).
* ``trainers.dgsa.TrainerDGSA``: DGSA, the per-pixel guidance scale (prior and DBLM frozen).

Every trainer subclasses :class:`trainers.base.TrainerBase` (see its docstring for how to add one).
``python -m trainers.evaluate`` scores saved weights with a trainer's own validation (module docstring).
"""
from trainers.base import TrainerBase, TrainerConfig, find_latest_checkpoint

__all__ = ["TrainerBase", "TrainerConfig", "find_latest_checkpoint"]
