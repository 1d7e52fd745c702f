"""Per-image records and the run's metrics table (docs/method.md section 11).

At the end rank 0 reads every record under ``<out>/records`` (earlier runs into the folder included) and writes
``metrics.csv`` (one row per image: :data:`RECORD_COLUMNS`, then the metrics titled with their conventions) and
``summary.json`` (per method: counts and means; ``faces``: the paste decisions). A non-finite PSNR stays ``inf``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

from faces.paste import DECISIONS
from utils.image_io import write_bytes_atomic
from utils.metrics import METRIC_CONVENTIONS, csv_header

RECORD_COLUMNS = ("key", "file", "method", "sigma_hat", "start_index", "start_t", "nfe", "eta", "seconds")
MEAN_FIELDS = ("nfe", "seconds")
TABLE_COLUMNS = (
    ("psnr", "PSNR"),
    ("ssim", "SSIM"),
    ("lpips_alex", "LPIPS"),
    ("lpips_vgg", "LPIPS-vgg"),
    ("id_dist", "ID dist"),
    ("id_same", "same ID"),
    ("nfe", "NFE"),
    ("seconds", "sec/img"),
)


def records_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "records"


def record_path(out_dir: Path, key: str) -> Path:
    return records_dir(out_dir) / f"{key}.json"


def write_json(path: Path, obj) -> Path:
    """``obj`` as indented JSON, atomically."""
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_records(out_dir: Path) -> List[dict]:
    """Every record under ``<out>/records`` (sorted by key); unreadable files are reported and skipped."""
    records = []
    for path in sorted(records_dir(out_dir).rglob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            print(f"{path}: record ignored: {err}", flush=True)
    return sorted(records, key=lambda r: str(r.get("key", "")))


def metric_names(records: Sequence[dict]) -> List[str]:
    """Metric names present in ``records``, in the order of METRIC_CONVENTIONS."""
    present = {name for r in records for name in (r.get("metrics") or {})}
    return [name for name in METRIC_CONVENTIONS if name in present]


def metrics_csv(records: Sequence[dict]) -> str:
    names = metric_names(records)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(RECORD_COLUMNS) + csv_header(names))
    for r in records:
        metrics = r.get("metrics") or {}
        writer.writerow([_cell(r.get(c)) for c in RECORD_COLUMNS] + [_cell(metrics.get(n)) for n in names])
    return buf.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _mean(values: List[float]):
    return sum(values) / len(values) if values else None


def summarize(records: Sequence[dict]) -> Dict[str, dict]:
    """Per method: counts and means (see the module docstring)."""
    names = metric_names(records)
    out: Dict[str, dict] = {}
    for method in sorted({str(r.get("method")) for r in records}):
        rows = [r for r in records if str(r.get("method")) == method]
        with_metrics = [r for r in rows if r.get("metrics")]
        means = {f: _mean([float(r[f]) for r in rows if r.get(f) is not None]) for f in MEAN_FIELDS}
        for n in names:
            means[n] = _mean([float(r["metrics"][n]) for r in with_metrics if n in r["metrics"]])
        out[method] = {"num_images": len(rows), "num_with_metrics": len(with_metrics), "mean": means}
    return out


def face_decisions(records: Sequence[dict]) -> Dict[str, int]:
    """How many faces of the whole photos in ``records`` each paste decision covers."""
    decisions = [face.get("decision") for r in records for face in (r.get("faces") or [])]
    return {d: decisions.count(d) for d in DECISIONS}


def decisions_line(counts: Dict[str, int]) -> str:
    """``faces: 3 restored, 1 partly, 2 kept as clean`` (the log line of a run of whole photos)."""
    return f"faces: {counts['restored']} restored, {counts['partly']} partly, {counts['kept']} kept as clean"


def format_table(summary: Dict[str, dict]) -> str:
    """A plain-text table: one row per method, mean PSNR, SSIM, LPIPS, NFE, seconds per image."""
    present = [(k, title) for k, title in TABLE_COLUMNS if any(s["mean"].get(k) is not None for s in summary.values())]
    header = ["method", "images", "with HQ"] + [title for _, title in present]
    rows = [
        [m, str(s["num_images"]), str(s["num_with_metrics"])] + [_fmt(s["mean"].get(k)) for k, _ in present]
        for m, s in summary.items()
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in [header] + rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def write_report(out_dir: Path) -> str:
    """Write metrics.csv and summary.json from all records; return the printed table."""
    out_dir = Path(out_dir)
    records = read_records(out_dir)
    write_bytes_atomic(out_dir / "metrics.csv", metrics_csv(records).encode("utf-8"))
    summary = summarize(records)
    names = metric_names(records)
    write_json(
        out_dir / "summary.json",
        {
            "methods": summary,
            "conventions": {n: METRIC_CONVENTIONS[n] for n in names},
            "num_records": len(records),
            "faces": face_decisions(records),
        },
    )
    return format_table(summary)
