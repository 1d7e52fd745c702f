"""The trainers of the six networks, all on the one loop of :class:`trainers.base.TrainerBase`.

A config names its trainer in ``trainer.target``; main.py runs any, train_SDE.py / train_DBLM.py only theirs:

* ``trainers.diffusion.TrainerDiffusion``: the face diffusion prior (improved-diffusion losses).
* ``trainers.restorer.TrainerRestorer``: the RM0 SwinIR restorer (L1 on blindly degraded pairs).
* ``trainers.dgsa.TrainerDGSA``: DGSA, the per-pixel guidance scale (prior and DBLM frozen).
* ``trainers.sde.TrainerSDE``: the DBLM sigma estimator SDE (:mod:`trainers.dblm`).
* ``trainers.transform.TrainerTM`` / ``TrainerRM``: the DBLM transformation and refinement models.

See :mod:`trainers.base` for how to add one; :mod:`trainers.cli` is the scripts' common command line.
``python -m trainers.evaluate`` scores saved weights with a trainer's own validation (module docstring).
"""
