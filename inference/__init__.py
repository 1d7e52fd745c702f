"""Inference over image folders (docs/method.md section 11): the library behind ``inference_difface.py``.

:mod:`~inference.args` (command line), :mod:`~inference.inputs` (files), :mod:`~inference.runner` (the loop),
:mod:`~inference.report` (tables from the records), :mod:`~inference.strip` (intermediates).
"""
