"""The trainers of the six networks, all on the one loop of :class:`trainers.base.TrainerBase`.

main.py (``trainer.target``): ``diffusion.TrainerDiffusion``, ``restorer.TrainerRestorer``, ``dgsa.TrainerDGSA``.
train_SDE.py / train_DBLM.py (``task``): ``sde.TrainerSDE``, ``transform.TrainerTM`` / ``TrainerRM``.
"""
