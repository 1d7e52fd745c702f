"""DBLM, Dynamic Blur-Level Mapping (docs/method.md section 4): SDE (sde.py), TM and RM (transform.py) and the
inference chain (dblm.py); their trainers are in trainers/ (sde.py, transform.py, dblm.py)."""
