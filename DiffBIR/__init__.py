"""DBLM, Dynamic Blur-Level Mapping (docs/method.md section 4): SDE (sde.py), TM and RM (transform.py), the
inference chain (dblm.py) and the shared accelerate training loop (training.py)."""
