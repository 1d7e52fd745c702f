"""utils/export_weights.py: EMA extraction from both trainers' layouts, lossless-fp16 rule, manifest."""

from __future__ import annotations

import json

import torch

from utils.checkpoint import load_checkpoint
from utils.export_weights import export, record_manifest, render_markdown, to_half_if_lossless
from utils.train_log import TrainLogger


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))


def test_fp16_only_when_every_tensor_survives():
    exact = {"w": torch.tensor([0.5, 0.25, -1.0])}  # representable in fp16
    half, err = to_half_if_lossless(exact, 1e-3)
    assert half["w"].dtype == torch.float16 and err == 0.0
    lossy = {"w": torch.tensor([1.0, 1e-6 + 1.0, 3.0e-4])}  # 1 + 1e-6 rounds to 1 in fp16 (relative error 1e-6)
    assert to_half_if_lossless(lossy, 1e-9)[0]["w"].dtype == torch.float32


def test_export_from_main_py_checkpoint_and_manifest(tmp_path):
    net, ema = _net(), _net()
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(1.0)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 7, "model": net.state_dict(), "ema": ema.state_dict()}, run / "ckpt_0000007.pth")
    logger = TrainLogger(run, total_steps=2)
    logger.step(1, {"loss": 2.0})
    logger.step(2, {"loss": 1.0})
    logger.close()
    config = tmp_path / "cfg.yaml"
    config.write_text("data: {train: {source: none.txt}}\n")
    out = tmp_path / "weights" / "net.pth"
    entry = export(run, out, config, "python main.py ...", fp16_tolerance=0.0)
    loaded = load_checkpoint(_net(), out)
    for a, b in zip(loaded.state_dict().values(), ema.state_dict().values()):
        assert torch.equal(a, b)  # the EMA weights, not the raw ones, and exactly (no fp16 at tolerance 0)
    assert entry["step"] == 7 and entry["dtype"] == "float32"
    assert entry["final_scalars"]["train/loss"] == 1.5
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert [e["file"] for e in manifest] == ["net.pth"]
    assert "## net.pth" in (out.parent / "MANIFEST.md").read_text()


def test_comparison_with_the_previous_export_is_rendered_and_dropped_by_a_new_export(tmp_path):
    """A hand-written ``against_previous`` shows in MANIFEST.md; re-exporting the file replaces the entry."""
    entry = {
        "file": "net.pth",
        "config": "c.yaml",
        "command": "cmd",
        "step": 1,
        "dtype": "float32",
        "fp16_max_rel_error": 0.0,
        "size_mb": 0.1,
        "machine": "m",
        "torch": "t",
        "date": "d",
        "final_scalars": {},
        "against_previous": "val loss 0.3 -> 0.2",
    }
    assert "- against the previous export: val loss 0.3 -> 0.2" in render_markdown([entry])
    record_manifest(tmp_path, entry)
    record_manifest(tmp_path, {k: v for k, v in entry.items() if k != "against_previous"})
    assert "against the previous" not in (tmp_path / "MANIFEST.md").read_text()
