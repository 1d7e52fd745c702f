"""The steps-quality frontier: DifFace and DynFaceRestore at several step counts with each solver (docs/steps.md).

    python scripts/evaluate_steps.py [--out results/steps] [--limit N] [--steps 100 50 25 10]
        [--solvers ddim dpmpp_2m] [--once-steps 25] [--sets blind opencv pillow] [--nproc 2]

Writes ``<out>/frontier.md``, ``.csv`` and ``.png``; rows already in ``--out`` are reused.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.foreign_chains import CHAINS, make_chain_testset  # noqa: E402
from data.make_testset import make_testset  # noqa: E402
from inference.report import read_records  # noqa: E402
from inference.steps import presets  # noqa: E402
from models.solvers import SOLVERS  # noqa: E402
from scripts.evaluate_demo import CONFIG, DEGRADATION, PUBLIC_CONFIG, SOURCE, row_dir, run_row, summarise  # noqa: E402
from utils.image_io import list_images, write_bytes_atomic  # noqa: E402

#: Frontier variants: the --method and --config each runs with.
VARIANTS = {
    "difface": ("difface", CONFIG),
    "dynfacerestore": ("dynfacerestore", CONFIG),
    "zero_shot": ("dynfacerestore", PUBLIC_CONFIG),
}
PAPER = "paper"  # the reference preset (configs/presets/steps.yaml): DDIM at 250 steps, guided once
LABELS = {
    "difface": "DifFace",
    "dynfacerestore": "DynFaceRestore",
    "zero_shot": "DynFaceRestore, zero-shot DBLM",
    "rm0": "RM0",
}
COLUMNS = (
    ("nfe", "mean NFE", 1),
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 4),
    ("lpips_alex", "LPIPS", 4),
    ("id_dist", "ID dist", 3),
    ("seconds", "s/face", 3),
)


@dataclass(frozen=True)
class Row:
    """One frontier row: a variant sampled at ``steps`` with ``solver``; ``reguide`` is the closed-form
    guidance applied again after the solver (sampler.guidance.reguide; None: the method has no guidance);
    ``preset``: run with ``--preset paper`` instead of the step options."""

    variant: str
    steps: Optional[int] = None
    solver: Optional[str] = None
    reguide: Optional[bool] = None
    preset: bool = False

    @property
    def method(self) -> str:
        """The ``--method`` it runs (its results folder is named after it)."""
        return VARIANTS.get(self.variant, (self.variant, CONFIG))[0]

    @property
    def config(self) -> str:
        return VARIANTS.get(self.variant, (self.variant, CONFIG))[1]

    @property
    def guided(self) -> str:
        return "-" if self.reguide is None else ("twice" if self.reguide else "once")

    def flags(self) -> list:
        """The command line's options (beyond method and config)."""
        if self.preset:
            return ["--preset", PAPER]
        if self.steps is None:
            return []
        return ["--steps", str(self.steps), "--solver", self.solver] + (
            [] if self.reguide is None else ["--opts", f"sampler.guidance.reguide={str(self.reguide).lower()}"]
        )


def rows(steps, solvers, once_steps) -> List[Row]:
    """RM0; every variant with the paper's preset; every variant at each step count and solver, the
    DynFaceRestore variants guided twice per step (the configs' reguide); then DynFaceRestore (learned
    DBLM) guided once per step at each ``once_steps`` count and solver (what reguide adds)."""
    paper = presets()[PAPER]
    guided = {"difface": None, "dynfacerestore": True, "zero_shot": True}
    return (
        [Row("rm0")]
        + [
            Row(v, paper["steps"], paper["solver"], None if guided[v] is None else paper["reguide"], preset=True)
            for v in VARIANTS
        ]
        + [Row(v, n, s, guided[v]) for v in VARIANTS for n in steps for s in solvers]
        + [Row("dynfacerestore", n, s, False) for n in once_steps for s in solvers]
    )


def make_sets(out: Path, names, limit):
    """{set name: test set folder} for ``names`` (blind: severity thirds; chains: data.foreign_chains)."""
    sets = {}
    for name in names:
        folder = out / name / "testset"
        if name == "blind":
            make_testset(
                ROOT / SOURCE,
                folder,
                resolution=64,
                seed=0,
                config=ROOT / DEGRADATION,
                severity_thirds=True,
                limit=limit,
            )
        else:
            make_chain_testset(ROOT / SOURCE, folder, name, resolution=64, seed=0, limit=limit)
        sets[name] = folder
    return sets


def run_set(testset: Path, out: Path, table, nproc: int):
    """Every row of ``table`` on one test set; their summaries over the faces every row restored."""
    faces = {p.stem for p in list_images(testset / "lq")}
    for index, row in enumerate(table):
        if faces <= {r["key"] for r in read_records(row_dir(out, index, row.method))}:
            continue  # restored by an earlier run: no process to start
        run_row(index, row.method, [], testset / "lq", testset / "hq", out, nproc, row.config, row.flags())
    records = [read_records(row_dir(out, i, row.method)) for i, row in enumerate(table)]
    common = set.intersection(*(set(r["key"] for r in recs) for recs in records))
    return [summarise([r for r in recs if r["key"] in common], {})["all"] for recs in records]


def markdown(table, results) -> str:
    lines = [
        "| method | steps | solver | guided | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
        "|---|---:|---|---|" + "---:|" * len(COLUMNS),
    ]
    for row, summary in zip(table, results):
        cells = [f"{summary[key]:.{digits}f}" for key, _, digits in COLUMNS]
        lines.append(
            f"| {LABELS[row.variant]} | {row.steps or '-'} | {row.solver or '-'} | {row.guided} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def csv_text(table, sections) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["testset", "variant", "steps", "solver", "guided", "n"] + [key for key, _, _ in COLUMNS])
    for name, results in sections:
        for row, summary in zip(table, results):
            writer.writerow(
                [name, row.variant, row.steps or "", row.solver or "", row.guided, summary["n"]]
                + [f"{summary[key]:.6g}" for key, _, _ in COLUMNS]
            )
    return buf.getvalue()


def plot(table, sections, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sections), 2, figsize=(10, 3.6 * len(sections)), squeeze=False)
    for (name, results), (ax_psnr, ax_lpips) in zip(sections, axes):
        for variant, solver, guided in sorted(
            {(r.variant, r.solver, r.guided) for r in table if r.variant in VARIANTS}
        ):
            points = sorted(
                (r["nfe"], r["psnr"], r["lpips_alex"])
                for row, r in zip(table, results)
                if (row.variant, row.solver, row.guided) == (variant, solver, guided)
            )
            label = f"{LABELS[variant]}, {solver}" + ("" if guided == "-" else f", guided {guided}")
            ax_psnr.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
            ax_lpips.plot([p[0] for p in points], [p[2] for p in points], "o-", label=label)
        rm0 = results[0]
        ax_psnr.axhline(rm0["psnr"], color="gray", ls=":", label="RM0 alone")
        ax_lpips.axhline(rm0["lpips_alex"], color="gray", ls=":", label="RM0 alone")
        for ax, ylabel in ((ax_psnr, "PSNR (dB)"), (ax_lpips, "LPIPS (alex), lower is better")):
            ax.set_xscale("log")
            ax.set_xlabel("mean UNet evaluations per face")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{name} ({rm0['n']} faces)")
            ax.grid(alpha=0.3)
        ax_psnr.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "steps")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N validation faces")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 50, 25, 10])
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument(
        "--once-steps",
        type=int,
        nargs="*",
        default=[25],
        help="step counts of the DynFaceRestore rows guided once per step (no reguide)",
    )
    parser.add_argument("--sets", nargs="+", choices=["blind"] + sorted(CHAINS), default=["blind"] + sorted(CHAINS))
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args(argv)
    table = rows(args.steps, args.solvers, args.once_steps)
    sections = [
        (name, run_set(folder, args.out / name, table, args.nproc))
        for name, folder in make_sets(args.out, args.sets, args.limit).items()
    ]
    command = " ".join(["python scripts/evaluate_steps.py"] + (argv if argv is not None else sys.argv[1:]))
    header = (
        f"Command: `{command}`; machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{platform.system()}; {date.today().isoformat()}.\n\n"
    )
    text = header + "\n".join(
        f"### {name} ({results[0]['n']} faces)\n\n{markdown(table, results)}" for name, results in sections
    )
    write_bytes_atomic(args.out / "frontier.md", text.encode())
    write_bytes_atomic(args.out / "frontier.csv", csv_text(table, sections).encode())
    plot(table, sections, args.out / "frontier.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
