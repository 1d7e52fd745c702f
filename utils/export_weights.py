"""Export a trained network's EMA weights for shipping, with their provenance.

    python -m utils.export_weights --run_dir experiments/demo64/diffusion --out weights/demo/unet_demo64.pth \
        --config configs/training/diffusion_demo64.yaml --command "python main.py ..."

float16 when no weight moves by more than ``--fp16_tolerance`` of its tensor's largest magnitude; provenance
in ``manifest.json`` and ``MANIFEST.md`` beside the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from utils.checkpoint import extract_state_dict, save_checkpoint
from utils.config import load_config
from utils.image_io import write_bytes_atomic
from utils.run_checkpoints import run_checkpoints

TRAIN_TAIL = 50  # final train scalars are the mean of the last TRAIN_TAIL logged values


def find_ema(run_dir: Path) -> Tuple[Dict[str, torch.Tensor], Optional[int]]:
    """EMA state dict of a run and its step (None when the file does not record it)."""
    final = run_dir / "ema_final.pth"
    if final.is_file():  # train_SDE.py / train_DBLM.py: the step is that of their newest checkpoints/ckpt_*.pth
        steps = run_checkpoints(run_dir / "checkpoints").steps()
        state = extract_state_dict(torch.load(final, map_location="cpu", weights_only=True), name=str(final))
        return state, steps[-1] if steps else None
    latest = run_checkpoints(run_dir).latest()
    if latest is None:
        raise FileNotFoundError(f"{run_dir}: neither ema_final.pth nor ckpt_*.pth found")
    ckpt = torch.load(latest, map_location="cpu", weights_only=True)
    return extract_state_dict(ckpt, key="ema", name=str(latest)), int(ckpt["step"])


def to_half_if_lossless(state: Dict[str, torch.Tensor], tolerance: float) -> Tuple[Dict[str, torch.Tensor], float]:
    """float16 copy when max |w16 - w| / max |w| <= tolerance for every tensor, else the float32 state."""
    worst = 0.0
    for value in state.values():
        if value.is_floating_point() and value.numel():
            scale = value.abs().max().clamp(min=1e-12)
            worst = max(worst, float(((value.half().float() - value).abs().max() / scale)))
    if worst <= tolerance:
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}, worst
    return state, worst


def tensorboard_summary(run_dir: Path, max_step: Optional[int] = None) -> Dict[str, object]:
    """Final scalars and wall time from ``run_dir/tb`` up to ``max_step`` (empty when there is no log)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = run_dir / "tb"
    if not tb.is_dir():
        return {}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    scalars: Dict[str, float] = {}
    first, last, last_step = None, None, 0
    for tag in acc.Tags()["scalars"]:
        events = [e for e in acc.Scalars(tag) if max_step is None or e.step <= max_step]
        if not events:
            continue
        tail = events[-TRAIN_TAIL:] if tag.startswith("train/") else events[-1:]
        scalars[tag] = round(sum(e.value for e in tail) / len(tail), 6)
        first = min(first, events[0].wall_time) if first is not None else events[0].wall_time
        last = max(last, events[-1].wall_time) if last is not None else events[-1].wall_time
        last_step = max(last_step, events[-1].step)
    out: Dict[str, object] = {"final_scalars": scalars, "logged_steps": last_step}
    if first is not None:
        out["wall_time_min"] = round((last - first) / 60.0, 1)
    return out


def data_list_hash(config_path: Path) -> Optional[str]:
    """sha256 of the training file list named by the config (``data.train`` or ``data.train.source``)."""
    cfg = load_config(config_path)
    train = cfg.get("data", {}).get("train")
    source = train.get("source") if hasattr(train, "get") else train
    if not source or not Path(source).is_file():
        return None
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def export(run_dir: Path, out: Path, config: Path, command: str, fp16_tolerance: float, note: str = "") -> dict:
    state, step = find_ema(run_dir)
    state, worst = to_half_if_lossless(state, fp16_tolerance)
    save_checkpoint(out, state)
    entry = {
        "file": out.name,
        "config": str(config),
        "command": command,
        "run_dir": str(run_dir),
        "step": step,
        "dtype": "float16" if next(iter(state.values())).dtype == torch.float16 else "float32",
        "fp16_max_rel_error": round(worst, 7),
        "data_list_sha256": data_list_hash(config),
        "size_mb": round(out.stat().st_size / 2**20, 2),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"),
        "torch": torch.__version__,
        "date": date.today().isoformat(),
        "note": note,
    }
    entry.update(tensorboard_summary(run_dir, step))
    if entry["step"] is None:
        entry["step"] = entry.get("logged_steps")
    record_manifest(out.parent, entry)
    return entry


def record_manifest(folder: Path, entry: dict) -> None:
    """Insert ``entry`` (replacing the one for the same file) into manifest.json and rewrite MANIFEST.md."""
    path = folder / "manifest.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    entries = [e for e in entries if e.get("file") != entry["file"]] + [entry]
    entries.sort(key=lambda e: e["file"])
    write_bytes_atomic(path, (json.dumps(entries, indent=2) + "\n").encode())
    write_bytes_atomic(folder / "MANIFEST.md", render_markdown(entries).encode())


def render_markdown(entries: list) -> str:
    lines = [
        "# Demo weights",
        "",
        "Written by `utils/export_weights.py` (from `scripts/train_demo.sh`); EMA weights of each run.",
        "Final train scalars are the mean of the last 50 logged values; validation scalars the last value.",
        "",
    ]
    for e in entries:
        lines += [
            f"## {e['file']}",
            "",
            f"- config: `{e['config']}`",
            f"- command: `{e['command']}`",
            f"- steps: {e.get('step')}; dtype {e['dtype']} (fp16 max relative error {e['fp16_max_rel_error']}); "
            f"{e['size_mb']} MB",
            f"- training list sha256: {e.get('data_list_sha256')}",
            f"- wall time: {e.get('wall_time_min', '?')} min on {e['machine']}; torch {e['torch']}; {e['date']}",
        ]
        if e.get("note"):
            lines.append(f"- note: {e['note']}")
        if e.get("against_previous"):  # written by hand after an evaluation; a new export drops it
            lines.append(f"- against the previous export: {e['against_previous']}")
        for tag, value in sorted(e.get("final_scalars", {}).items()):
            lines.append(f"- {tag}: {value:.6g}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--fp16_tolerance", type=float, default=1e-3)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    try:
        entry = export(args.run_dir, args.out, args.config, args.command, args.fp16_tolerance, args.note)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"export_weights: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
