"""The paper's evaluation protocol on folders of restored faces: one table row per folder.

    python scripts/evaluate.py --restored DIR [DIR ...] [--hq DIR] [--fid-stats FILE] [--metrics ...] [--out FILE]
    python scripts/evaluate.py --make-stats HQ_DIR --out stats.npz

Per-image metrics (``utils.metrics.compute_metrics``) and set metrics (fid, fid_stats, kid); a metric that
cannot run is listed as unavailable with the reason. ``--out FILE`` writes FILE.csv and FILE.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faces.identity import FaceIdentity  # noqa: E402
from utils.arcface import ArcFaceIdentity  # noqa: E402
from utils.config import first_line  # noqa: E402
from utils.eval_weights import DEFAULT_DIR, WeightsError, find_weights  # noqa: E402
from utils.feature_stats import StatsError, feature_stats, frechet_distance, kid, load_stats, save_stats  # noqa: E402
from utils.image_io import ImageReadError, list_images, read_image, write_bytes_atomic  # noqa: E402
from utils.inception import InceptionFeatures  # noqa: E402
from utils.landmarks import AWingLandmarks, DlibLandmarks  # noqa: E402
from utils.metrics import LPIPS_WEIGHTS_ENV, LPIPSMetric, compute_metrics  # noqa: E402

#: metric -> (columns it fills, needs --hq)
METRICS = {
    "psnr": (("psnr",), True),
    "ssim": (("ssim",), True),
    "lpips": (("lpips_alex",), True),
    "niqe": (("niqe",), False),
    "id_dlib": (("id_dist", "id_same"), True),
    "arcface": (("arcface_cos", "arcface_deg"), True),
    "lmd_dlib": (("lmd_dlib",), True),
    "lmd_awing": (("lmd_awing",), True),
    "fid": (("fid",), True),
    "fid_stats": (("fid_stats",), False),
    "kid": (("kid",), True),
    "musiq": (("musiq",), False),
    "clipiqa": (("clipiqa",), False),
}
LABELS = {
    "psnr": ("PSNR", 2),
    "ssim": ("SSIM", 4),
    "lpips_alex": ("LPIPS", 4),
    "niqe": ("NIQE", 3),
    "id_dist": ("ID dist (dlib)", 3),
    "id_same": ("same ID (dlib)", 2),
    "arcface_cos": ("ArcFace cos", 4),
    "arcface_deg": ("Deg.", 2),
    "lmd_dlib": ("LMD (dlib)", 2),
    "lmd_awing": ("LMD (AWing)", 2),
    "fid": ("FID (HQ)", 2),
    "fid_stats": ("FID (stats)", 2),
    "kid": ("KID", 5),
    "musiq": ("MUSIQ", 2),
    "clipiqa": ("CLIPIQA", 4),
}
PYIQA_METRICS = ("musiq", "clipiqa")
SET_METRICS = ("fid", "fid_stats", "kid")


class Unavailable(Exception):
    """A metric that cannot run with the given arguments or installed packages; the message says what it needs."""


class Metrics:
    """The metric objects that could be built, and why the others could not."""

    def __init__(self, names: List[str], args):
        self.unavailable: Dict[str, str] = {}
        self.lpips = self.identity = self.inception = self.stats = None
        self.face: list = []
        self.pyiqa: dict = {}
        self.names = []
        for name in names:
            try:
                self._build(name, args)
                self.names.append(name)
            except (Unavailable, WeightsError, StatsError) as err:
                self.unavailable[name] = str(err)
            except Exception as err:  # noqa: BLE001 - a metric that cannot be built is reported, not fatal
                self.unavailable[name] = f"{type(err).__name__}: {first_line(err)}"

    def _build(self, name: str, args) -> None:
        if METRICS[name][1] and args.hq is None:
            raise Unavailable("needs --hq (a paired metric)")
        weights = args.weights_dir
        if name == "lpips":
            if args.lpips_weights is None:
                raise Unavailable(f"needs --lpips-weights DIR or ${LPIPS_WEIGHTS_ENV} (weights/README.md)")
            self.lpips = LPIPSMetric("alex", args.lpips_weights, device=args.device)
        elif name == "id_dlib":
            self.identity = FaceIdentity()
        elif name == "arcface":
            self.face.append(ArcFaceIdentity(find_weights("arcface", weights), device=args.device))
        elif name == "lmd_dlib":
            self.face.append(DlibLandmarks())
        elif name == "lmd_awing":
            self.face.append(AWingLandmarks(find_weights("awing", weights), device=args.device))
        elif name in SET_METRICS:
            if name == "fid_stats":
                if args.fid_stats is None:
                    raise Unavailable(
                        "needs --fid-stats FILE (e.g. weights/metrics/inception_FFHQ_512-f7b384ab.pth, "
                        "or one written by --make-stats)"
                    )
                self.stats = load_stats(args.fid_stats)
            if self.inception is None:
                self.inception = InceptionFeatures(find_weights("fid_inception", weights), device=args.device)
        elif name in PYIQA_METRICS:
            try:
                import pyiqa
            except ImportError:
                raise Unavailable("needs pyiqa (pip install pyiqa; not a requirement of this project)") from None
            self.pyiqa[name] = pyiqa.create_metric(name, device=args.device)


def _pyiqa_score(metric, img: np.ndarray) -> float:
    """pyiqa's score of one HxWx3 [0, 1] image (its input: NCHW RGB in [0, 1])."""
    return float(metric(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()))


def image_records(folder: Path, hq: Optional[Dict[str, Path]], metrics: Metrics) -> List[dict]:
    """One record per image of ``folder``: its per-image metrics and why any were skipped."""
    records = []
    for path in list_images(folder):
        record = {"file": path.name, "metrics": {}}
        try:
            img = read_image(path)
            ref = read_image(hq[path.stem]) if hq is not None and path.stem in hq else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NIQE's "too small" warning: the table names the skipped faces
                record["metrics"] = compute_metrics(
                    img,
                    ref,
                    metrics.lpips,
                    with_niqe="niqe" in metrics.names,
                    identity=metrics.identity,
                    face_metrics=metrics.face,
                )
            record["metrics"].update({name: _pyiqa_score(m, img) for name, m in metrics.pyiqa.items()})
            if hq is not None and ref is None:
                record["note"] = "no HQ image of this name"
        except (ImageReadError, ValueError) as err:
            record["note"] = first_line(err)
        records.append(record)
    return records


def set_metrics(folder: Path, hq_features: Optional[np.ndarray], metrics: Metrics, kid_seed: int) -> dict:
    """FID against the HQ folder and the statistics file, KID (mean, std) against the HQ folder."""
    out: dict = {}
    features = metrics.inception(read_image(p) for p in list_images(folder))
    if len(features) < 2:
        return out
    mu, sigma = feature_stats(features)
    if "fid" in metrics.names and hq_features is not None and len(hq_features) >= 2:
        out["fid"] = frechet_distance(mu, sigma, *feature_stats(hq_features))
    if "fid_stats" in metrics.names:
        out["fid_stats"] = frechet_distance(mu, sigma, *metrics.stats)
    if "kid" in metrics.names and hq_features is not None and len(hq_features) >= 2:
        out["kid"], out["kid_std"] = kid(features, hq_features, seed=kid_seed)
    out["n_features"] = len(features)
    return out


def summarise(records: List[dict], sets: dict, columns: List[str]) -> dict:
    """Per column: mean over the values (NaN: none), n, and the faces without a value (with the reason)."""
    out = {}
    for column in columns:
        if column in SET_METRICS:
            value = sets.get(column, math.nan)
            out[column] = {"mean": value, "n": sets.get("n_features", 0) if column in sets else 0, "skipped": []}
            if column == "kid" and "kid_std" in sets:
                out[column]["std"] = sets["kid_std"]
            continue
        values, skipped = [], []
        for r in records:
            v = r["metrics"].get(column)
            if v is not None and not math.isnan(v):  # inf (PSNR of identical images) is a value
                values.append(v)
            else:
                skipped.append(f"{r['file']} ({r.get('note') or _skip_reason(column, v)})")
        out[column] = {"mean": float(np.mean(values)) if values else math.nan, "n": len(values), "skipped": skipped}
    return out


def _skip_reason(column: str, value) -> str:
    if value is not None:
        return "too small" if column == "niqe" else "NaN"
    return "no face found in the HQ image" if column in ("id_dist", "id_same", "lmd_dlib") else "no value"


def table(results: Dict[str, dict], columns: List[str]) -> str:
    lines = ["| restored | " + " | ".join(LABELS[c][0] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for folder, summary in results.items():
        cells = []
        for c in columns:
            s = summary[c]
            mean = "-" if math.isnan(s["mean"]) else f"{s['mean']:.{LABELS[c][1]}f}"
            std = f" ± {s['std']:.{LABELS[c][1]}f}" if "std" in s else ""
            cells.append(f"{mean}{std} (n={s['n']})")
        lines.append(f"| {folder} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def skipped_lines(results: Dict[str, dict], shown: int = 5) -> List[str]:
    lines = []
    for folder, summary in results.items():
        for column, s in summary.items():
            if s["skipped"]:
                more = f" and {len(s['skipped']) - shown} more" if len(s["skipped"]) > shown else ""
                lines.append(
                    f"{folder}: {LABELS[column][0]} skipped {len(s['skipped'])}: "
                    f"{', '.join(s['skipped'][:shown])}{more}"
                )
    return lines


def csv_text(results: Dict[str, dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["restored", "metric", "mean", "std", "n", "skipped"])
    for folder, summary in results.items():
        for column, s in summary.items():
            writer.writerow(
                [folder, column, f"{s['mean']:.6g}", f"{s['std']:.6g}" if "std" in s else "", s["n"], len(s["skipped"])]
            )
    return buf.getvalue()


def _finite(obj):
    """``obj`` with NaN / inf floats as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def make_stats(hq_dir: Path, out: Path, weights_dir: Path, device: str) -> int:
    try:
        inception = InceptionFeatures(find_weights("fid_inception", weights_dir), device=device)
        paths = list_images(hq_dir)
        features = inception(read_image(p) for p in paths)
        mu, sigma = feature_stats(features)
    except (WeightsError, FileNotFoundError, ImageReadError, ValueError) as err:
        print(f"evaluate: {first_line(err)}", file=sys.stderr)
        return 1
    save_stats(out, mu, sigma, n=len(paths))
    print(f"evaluate: wrote {out} (mean and covariance of {len(paths)} images' FID Inception features)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restored", type=Path, nargs="+", help="folders of restored faces, one table row each")
    parser.add_argument("--hq", type=Path, default=None, help="HQ faces (same file stems): the paired metrics")
    parser.add_argument(
        "--fid-stats",
        type=Path,
        default=None,
        help="FID statistics (.npz of --make-stats, or basicsr's .pth such as FFHQ 512's)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        choices=sorted(METRICS),
        default=list(METRICS),
        help="metrics to compute (default all; those that cannot run are listed as unavailable)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write OUT.csv and OUT.json (--make-stats: the .npz)")
    parser.add_argument(
        "--make-stats",
        type=Path,
        default=None,
        metavar="HQ_DIR",
        help="write the FID statistics of HQ_DIR to --out and stop",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=ROOT / DEFAULT_DIR,
        help="where scripts/download_weights.py --eval puts the files (default weights/metrics)",
    )
    parser.add_argument(
        "--lpips-weights", type=Path, default=None, help=f"offline LPIPS backbone folder (default ${LPIPS_WEIGHTS_ENV})"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kid-seed", type=int, default=0, help="seed of the KID subsets")
    args = parser.parse_args(argv)
    if args.make_stats is not None:
        if args.out is None or args.out.suffix != ".npz":
            parser.error("--make-stats needs --out FILE.npz")
        return make_stats(args.make_stats, args.out, args.weights_dir, args.device)
    if not args.restored:
        parser.error("--restored DIR [DIR ...] is required")
    for folder in args.restored + ([args.hq] if args.hq else []):
        if not folder.is_dir() or not list_images(folder):
            parser.error(f"{folder}: not a folder with images")
    if args.lpips_weights is None and LPIPS_WEIGHTS_ENV in os.environ:
        args.lpips_weights = Path(os.environ[LPIPS_WEIGHTS_ENV])
    metrics = Metrics(list(dict.fromkeys(args.metrics)), args)
    columns = [c for name in metrics.names for c in METRICS[name][0]]
    hq = {p.stem: p for p in list_images(args.hq)} if args.hq else None
    hq_features = None
    if metrics.inception is not None and hq is not None:
        hq_features = metrics.inception(read_image(p) for p in hq.values())
    results, per_image = {}, {}
    for folder in args.restored:
        records = image_records(folder, hq, metrics)
        sets = set_metrics(folder, hq_features, metrics, args.kid_seed) if metrics.inception is not None else {}
        results[str(folder)] = summarise(records, sets, columns)
        per_image[str(folder)] = records
    lines = [table(results, columns), ""] + skipped_lines(results)
    lines += [f"unavailable: {name}: {reason}" for name, reason in metrics.unavailable.items()]
    print("\n".join(lines))
    if args.out is not None:
        stem = args.out.with_suffix("") if args.out.suffix in (".csv", ".json") else args.out
        write_bytes_atomic(stem.with_name(stem.name + ".csv"), csv_text(results).encode())
        report = {"results": results, "unavailable": metrics.unavailable, "images": per_image}
        write_bytes_atomic(stem.with_name(stem.name + ".json"), (json.dumps(_finite(report), indent=1) + "\n").encode())
        print(f"evaluate: wrote {stem}.csv and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
