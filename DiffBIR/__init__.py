"""DBLM, Dynamic Blur-Level Mapping (DESIGN.md section 3): SDE (sde.py), TM and RM (transform.py), the
inference chain (dblm.py) and the shared accelerate training loop (training.py)."""
