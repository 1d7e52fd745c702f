"""Small-scale evaluation: every method and ablation on CelebA-Test-style sets, tables and one plot.

    python scripts/evaluate_demo.py [--out results/eval] [--nproc 2] [--limit N] [--rows ...] [--chains ...]

Degrades the 100 held-out faces at 64 px (``data.make_testset``), scores the LQ inputs (row 0) and runs every
other row of :data:`ROWS` with ``inference_difface.py --preset paper`` under torchrun; writes ``<out>/table.md``,
``table.csv`` and ``psnr_lpips.png`` (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.foreign_chains import CHAINS, make_chain_testset  # noqa: E402
from data.make_testset import make_testset  # noqa: E402
from inference.report import read_records, record_path, write_json  # noqa: E402
from utils.feature_stats import kid  # noqa: E402
from utils.image_io import read_image, write_bytes_atomic  # noqa: E402
from utils.landmarks import DlibLandmarks  # noqa: E402
from utils.vgg_features import VGGFeatures  # noqa: E402

CONFIG = "configs/sample/dynfacerestore_demo.yaml"
PUBLIC_CONFIG = "configs/sample/dynfacerestore_demo_public.yaml"  # the zero-shot DBLM rows
SOURCE = "../shared/data/faces_hq/celeba128_val.txt"
DEGRADATION = "configs/degradation/demo64.yaml"
LPIPS_WEIGHTS = "../shared/weights/lpips"
FULL_RESOLUTION_DGSA = "weights/demo/dgsa_full_demo64.pth"  # the config's DGSA trained with map_downsample 1
LQ_METHOD = "lq"  # row 0: the inputs scored as they are, no command run
ROWS = [  # (name, --method, --opts[, --config: CONFIG unless given])
    ("LQ (input)", LQ_METHOD, []),
    ("RM0 only", "rm0", []),
    ("DifFace (start 100/250)", "difface", []),
    ("+ DSST start", "dynfacerestore", ["sampler.guidance.mode=none"]),
    ("+ closed-form guidance, global s", "dynfacerestore", ["sampler.guidance.mode=global"]),
    ("+ DGSA every step", "dynfacerestore", ["sampler.guidance.mode=dgsa", "sampler.guidance.dgsa_every=1"]),
    ("+ DGSA every 8 steps", "dynfacerestore", ["sampler.guidance.mode=dgsa", "sampler.guidance.dgsa_every=8"]),
    (
        "+ DGSA at full resolution, every 8 steps",
        "dynfacerestore",
        [
            "sampler.guidance.mode=dgsa",
            "sampler.guidance.dgsa_every=8",
            f"dgsa.ckpt_path={FULL_RESOLUTION_DGSA}",
            "dgsa.params.map_downsample=1",
        ],
    ),
    (
        "+ DGSA every 16 steps (the config)",
        "dynfacerestore",
        ["sampler.guidance.mode=dgsa", "sampler.guidance.dgsa_every=16"],
    ),
    ("+ DGSA every 32 steps", "dynfacerestore", ["sampler.guidance.mode=dgsa", "sampler.guidance.dgsa_every=32"]),
    # the public-weights recipe (DiffBIR/zero_shot.py): no DBLM networks, levels from RM0
    ("zero-shot DBLM, global s (public recipe)", "dynfacerestore", [], PUBLIC_CONFIG),
    (
        "zero-shot DBLM + DGSA every 16 steps",
        "dynfacerestore",
        ["sampler.guidance.mode=dgsa", "sampler.guidance.dgsa_every=16"],
        PUBLIC_CONFIG,
    ),
]
# LQ, RM0, DifFace, learned DBLM with global s and with DGSA (the config), zero-shot DBLM on the foreign chains
CHAIN_ROWS = (0, 1, 2, 4, 8, 10, 11)
COLUMNS = (
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 4),
    ("lpips_alex", "LPIPS", 4),
    ("id_dist", "ID dist", 3),
    ("id_same", "same ID", 2),
    ("lmd_dlib", "LMD", 2),
    ("kid_vgg", "KID (VGG16)", 4),
    ("start_t", "start t", 0),
    ("nfe", "NFE", 1),
    ("seconds", "s/img", 3),
)
METRIC_KEYS = ("psnr", "ssim", "lpips_alex", "id_dist", "id_same", "lmd_dlib")
SET_KEYS = ("kid_vgg",)  # one value per group of faces, not a mean of per-image values
KID_MIN_FACES = 4
GROUPS = ("all", "mild", "medium", "severe")


def row_dir(out: Path, index: int, method: str) -> Path:
    return out / f"row{index}_{method}"


def score_inputs(lq: Path, hq: Path, out: Path) -> None:
    """Row 0: a record per LQ image with its metrics against the HQ face (no restoration, NFE 0)."""
    from faces.identity import FaceIdentity
    from utils.image_io import list_images, read_image
    from utils.metrics import LPIPSMetric, compute_metrics

    lpips, identity = LPIPSMetric("alex", ROOT / LPIPS_WEIGHTS), FaceIdentity()
    for path in list_images(lq):
        record = record_path(out, path.stem)
        if not record.is_file():
            metrics = compute_metrics(read_image(path), read_image(hq / path.name), lpips, identity=identity)
            write_json(
                record,
                {
                    "key": path.stem,
                    "file": str(path),
                    "method": LQ_METHOD,
                    "metrics": metrics,
                    "nfe": 0,
                    "seconds": 0.0,
                    "start_t": None,
                },
            )


def run_row(
    index: int,
    method: str,
    opts: list,
    lq: Path,
    hq: Path,
    out: Path,
    nproc: int,
    config: str = CONFIG,
    flags: Sequence[str] = (),
) -> None:
    """One row through the real command line (``flags``: more of its options; without any, the paper's
    sampling, ``--preset paper``); images already restored in its folder are skipped."""
    if method == LQ_METHOD:
        return score_inputs(lq, hq, row_dir(out, index, method))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--standalone",
        str(ROOT / "inference_difface.py"),
        "-i",
        str(lq),
        "-i_hq",
        str(hq),
        "-o",
        str(row_dir(out, index, method)),
        "--config",
        str(ROOT / config),
        "--aligned",
        "--bs",
        "10",
        "--task",
        "restoration",
        "--method",
        method,
        "--lpips_weights",
        str(ROOT / LPIPS_WEIGHTS),
        "--seed",
        "0",
    ]
    cmd += list(flags) or ["--preset", "paper"]  # the tables of docs/evaluation.md: the paper's 250 DDIM steps
    if opts:
        cmd += ["--opts", *opts]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def summarise(records: list, severity: dict, hq_features: Optional[dict] = None) -> dict:
    """Means of every column over all images and per severity third; with ``hq_features`` (key -> VGG16
    feature of the HQ face) and records carrying ``vgg_features``, KID of each group against its HQ faces."""
    out = {}
    for group in GROUPS:
        chosen = [r for r in records if group == "all" or severity.get(r["key"]) == group]
        out[group] = {"n": len(chosen)}
        for key, _, _ in COLUMNS:
            values = [float(v) for v in (_value(r, key) for r in chosen) if v is not None]
            out[group][key] = sum(values) / len(values) if values else float("nan")
        if hq_features is not None and len(chosen) >= KID_MIN_FACES:
            out[group]["kid_vgg"], out[group]["kid_vgg_std"] = kid(
                np.stack([r["vgg_features"] for r in chosen]), np.stack([hq_features[r["key"]] for r in chosen])
            )
    return out


class OfflineColumns:
    """The columns computed here from the written images: dlib's LMD per face, VGG16 features for KID."""

    def __init__(self, hq: Path):
        self.hq, self.lmd, self.vgg = hq, DlibLandmarks(), VGGFeatures(ROOT / LPIPS_WEIGHTS)

    def hq_features(self, keys) -> dict:
        return {key: self.vgg([read_image(self.hq / f"{key}.png")])[0] for key in keys}

    def add(self, folder: Path, records: list) -> list:
        """Copies of ``records`` with ``metrics['lmd_dlib']`` (when the HQ face is found) and ``vgg_features``
        of the image each scores: the restoration (its ``output``) or, for the LQ row, the input."""
        scored = []
        for record in records:
            path = folder / record["output"] if "output" in record else ROOT / record["file"]
            img, ref = read_image(path), read_image(self.hq / f"{record['key']}.png")
            metrics = {**record.get("metrics", {}), **self.lmd.metrics(img, ref)}
            scored.append({**record, "metrics": metrics, "vgg_features": self.vgg([img])[0]})
        return scored


def _value(record: dict, key: str):
    """A column of a per-image record: a metric (``record["metrics"]``) or a sampling field."""
    if key in SET_KEYS:
        return None
    return (record.get("metrics") or {}).get(key) if key in METRIC_KEYS else record.get(key)


def markdown(results: list) -> str:
    lines = []
    for group in GROUPS:
        n = results[0][1][group]["n"]
        if n == 0:  # a set without severity thirds
            continue
        lines += [
            f"**{group}** ({n} faces)",
            "",
            "| method | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
            "|---|" + "---:|" * len(COLUMNS),
        ]
        for name, summary in results:
            cells = [_cell(summary[group][key], key, digits) for key, _, digits in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: float, key: str, digits: int) -> str:
    """A table cell; "-" where a row has no such value (no start step for LQ and RM0, no face embedding)."""
    return "-" if math.isnan(value) or (key == "start_t" and value < 0) else f"{value:.{digits}f}"


def csv_text(sections: list) -> str:
    """One row per (test set, method, severity group) with at least one face."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["testset", "method", "severity", "n"] + [key for key, _, _ in COLUMNS] + ["kid_vgg_std"])
    for testset, _, results in sections:
        for name, summary in results:
            for group in GROUPS:
                if summary[group]["n"]:
                    writer.writerow(
                        [testset, name, group, summary[group]["n"]]
                        + [f"{summary[group].get(k, math.nan):.6g}" for k, _, _ in COLUMNS]
                        + [f"{summary[group].get('kid_vgg_std', math.nan):.6g}"]
                    )
    return buf.getvalue()


def plot(results: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    groups: list = []  # rows that land on about the same spot share one label: their row numbers
    for index, (name, summary) in enumerate(results):
        point = (summary["all"]["lpips_alex"], summary["all"]["psnr"])
        ax.scatter(*point, s=60, label=f"{index}: {name}")
        near = [g for g in groups if abs(g[0][0] - point[0]) < 0.002 and abs(g[0][1] - point[1]) < 0.05]
        if near:
            near[0][1].append(str(index))
        else:
            groups.append((point, [str(index)]))
    for point, indices in groups:
        ax.annotate(",".join(indices), point, textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("LPIPS (alex), lower is better")
    ax.set_ylabel("PSNR (dB), higher is better")
    ax.set_title("64 px demo models, 100 CelebA val faces")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(testset: Path, out: Path, rows: list, severity: dict, nproc: int, common_opts: list) -> list:
    """Run ``rows`` on ``testset`` into ``out`` (``common_opts`` appended to every row's --opts); the
    summaries of every row restored there so far."""
    for index in rows:
        _, method, opts, *config = ROWS[index]
        run_row(index, method, opts + common_opts, testset / "lq", testset / "hq", out, nproc, *config)
    done = [(name, row_dir(out, i, method)) for i, (name, method, *_) in enumerate(ROWS)]
    done = [(name, folder, read_records(folder)) for name, folder in done]
    done = [(name, folder, records) for name, folder, records in done if records]
    common = set.intersection(*(set(r["key"] for r in records) for _, _, records in done))  # same faces in every row
    offline = OfflineColumns(testset / "hq")
    hq_features = offline.hq_features(sorted(common))
    return [
        (name, summarise(offline.add(folder, [r for r in records if r["key"] in common]), severity, hq_features))
        for name, folder, records in done
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "eval")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N validation faces")
    parser.add_argument(
        "--rows",
        type=int,
        nargs="*",
        default=list(range(len(ROWS))),
        help="rows to run on the blind set (default all); the table holds every row restored so far",
    )
    parser.add_argument(
        "--chains",
        nargs="*",
        default=sorted(CHAINS),
        choices=sorted(CHAINS),
        help=f"foreign degradation chains to evaluate rows {list(CHAIN_ROWS)} on (default all)",
    )
    parser.add_argument(
        "--chain-rows",
        type=int,
        nargs="*",
        default=list(CHAIN_ROWS),
        help=f"rows to run on the chains (default {list(CHAIN_ROWS)})",
    )
    parser.add_argument(
        "--opts",
        nargs="*",
        default=[],
        help="config overrides added to every row, e.g. a shorter respacing: "
        "diffusion.params.timestep_respacing=ddim50 sampler.fixed_start_index=20",
    )
    args = parser.parse_args(argv)
    testset = args.out / "testset"
    manifest = make_testset(
        ROOT / SOURCE, testset, resolution=64, seed=0, config=ROOT / DEGRADATION, severity_thirds=True, limit=args.limit
    )
    severity = {img["name"]: img["severity"] for img in manifest["images"]}
    sections = [
        (
            "blind degradation (configs/degradation/demo64.yaml, thirds)",
            args.out,
            evaluate(testset, args.out, args.rows, severity, args.nproc, args.opts),
        )
    ]
    for chain in args.chains:
        chain_out = args.out / f"chain_{chain}"
        make_chain_testset(ROOT / SOURCE, chain_out / "testset", chain, resolution=64, seed=0, limit=args.limit)
        sections.append(
            (
                f"chain '{chain}' (data/foreign_chains.py)",
                chain_out,
                evaluate(chain_out / "testset", chain_out, args.chain_rows, {}, args.nproc, args.opts),
            )
        )
    command = " ".join(sys.argv[1:] if argv is None else argv)
    header = (
        f"Command: `python scripts/evaluate_demo.py {command}`; machine: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, {platform.system()}; {date.today().isoformat()}.\n\n"
    )
    text = header + "\n".join(f"### Test set: {title}\n\n{markdown(results)}" for title, _, results in sections)
    write_bytes_atomic(args.out / "table.md", text.encode())
    write_bytes_atomic(args.out / "table.csv", csv_text(sections).encode())
    write_bytes_atomic(
        args.out / "summary.json",
        (json.dumps({title: dict(results) for title, _, results in sections}, indent=1) + "\n").encode(),
    )
    plot(sections[0][2], args.out / "psnr_lpips.png")
    print(text)
    print(f"evaluate_demo: wrote {args.out}/table.md, table.csv, psnr_lpips.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
