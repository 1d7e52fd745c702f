"""The training loop trains what the shipped demo configs train: the first losses of each of the six demo
trainings (the prior, RM0, SDE, TM, RM, DGSA; fixed seed, CPU, one process) equal the recording in
tests/demo_losses.json, made by ``python tests/demo_losses.py --write`` (its ``recorded_at`` names the commit
it was made on). The recording holds 20 steps; the test trains the first ``CHECKED`` of
them, which are the same in a shorter run (:func:`demo_losses.command`), without the final validation;
``python tests/demo_losses.py`` prints all 20 for a comparison by eye.

Tolerance: relative 1e-6 on the torch version and CPU kernel set (``cpu_capability``) of the recording,
where a run repeats bit for bit. Elsewhere the kernels round differently (bf16 autocast above all), and the
test only checks that each loss stays within 5 % of the recording.
"""

from __future__ import annotations

import json

import pytest

from demo_losses import FIXTURE, RUNS, STEPS, machine, train_losses

RECORDED = json.loads(FIXTURE.read_text())
CHECKED = 2  # steps trained per network: the six take about 7 minutes on a loaded 2-core CPU


@pytest.mark.parametrize("network", list(RUNS))
def test_demo_training_reproduces_the_recorded_losses(network, faces_hq_dir):
    recorded = RECORDED["losses"][network]
    assert len(recorded) == STEPS == RECORDED["steps"]
    same_machine = all(RECORDED[key] == value for key, value in machine().items())
    losses = train_losses(network, CHECKED, validate=False)
    assert losses == pytest.approx(recorded[:CHECKED], rel=1e-6 if same_machine else 5e-2)
