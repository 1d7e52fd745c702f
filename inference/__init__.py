"""Inference over image folders (docs/method.md section 11): the library behind ``inference_difface.py``.

- :mod:`inference.args`: the command line (the paper's flags plus --config, --method, --seed, ...).
- :mod:`inference.inputs`: listing, sharding, per-image seeds, reading and normalising each file.
- :mod:`inference.runner`: the torchrun loop (restore, write results and per-image records).
- :mod:`inference.report`: metrics.csv, summary.json and the printed table, from the records on disk.
- :mod:`inference.strip`: the --save_intermediates strip image.
"""
