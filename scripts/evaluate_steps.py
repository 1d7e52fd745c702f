"""The steps-quality frontier: DifFace and DynFaceRestore at several step counts with each solver.

    python scripts/evaluate_steps.py [--out results/steps] [--limit N] [--steps 100 50 25 12]
                                     [--solvers ddim dpmpp_2m] [--sets blind opencv pillow] [--nproc 2]

The test sets are those of ``scripts/evaluate_demo.py`` (the held-out validation faces degraded by the
project's blind degradation in severity thirds, and by the foreign ``opencv`` and ``pillow`` chains),
the first ``--limit`` faces of each. Every row runs ``inference_difface.py`` under torchrun with the demo
config and ``--method``, ``--steps N`` and ``--solver`` (DifFace keeps its start t = 400 at every N);
RM0 alone is the zero-step row, and rows 1 and 2 are both methods with ``--preset paper`` (DDIM at 250
steps: the reference of about 100 evaluations). Per row and set: mean PSNR, SSIM, LPIPS, identity distance, mean NFE and
seconds per face (the restore call, batches of 10, as the per-image records give it). Writes
``<out>/frontier.md``, ``<out>/frontier.csv`` and ``<out>/frontier.png`` (PSNR and LPIPS against mean NFE).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.foreign_chains import CHAINS, make_chain_testset  # noqa: E402
from data.make_testset import make_testset  # noqa: E402
from inference.report import read_records  # noqa: E402
from inference.steps import presets  # noqa: E402
from models.solvers import SOLVERS  # noqa: E402
from scripts.evaluate_demo import DEGRADATION, SOURCE, row_dir, run_row, summarise  # noqa: E402
from utils.image_io import list_images, write_bytes_atomic  # noqa: E402

METHODS = ("difface", "dynfacerestore")
PAPER = "paper"  # the preset of rows 1 and 2 (configs/presets/steps.yaml)
LABELS = {"difface": "DifFace", "dynfacerestore": "DynFaceRestore", "rm0": "RM0"}
GUIDED = {("rm0", None): "-", ("difface", False): "-", ("dynfacerestore", False): "once",
          ("dynfacerestore", True): "twice"}  # closed-form guidance per step (sampler.guidance.reguide)
COLUMNS = (("nfe", "mean NFE", 1), ("psnr", "PSNR", 2), ("ssim", "SSIM", 4), ("lpips_alex", "LPIPS", 4),
           ("id_dist", "ID dist", 3), ("seconds", "s/face", 3))


def rows(steps, solvers, reguide_steps):
    """(method, steps, solver, reguide) of every row: RM0, each method with the paper's preset (DDIM at 250
    steps, guided once per step), each method at each step count and solver guided once per step, then
    DynFaceRestore at each ``reguide_steps`` count and solver with ``sampler.guidance.reguide``."""
    paper = presets()[PAPER]
    return ([("rm0", None, None, None)] + [(m, paper["steps"], paper["solver"], paper["reguide"]) for m in METHODS]
            + [(m, n, s, False) for m in METHODS for n in steps for s in solvers]
            + [("dynfacerestore", n, s, True) for n in reguide_steps for s in solvers])


def row_flags(index: int, steps, solver, reguide) -> list:
    """The command line's options of a row (rows 1 and 2: the paper's preset)."""
    if index in (1, 2):
        return ["--preset", PAPER]
    if steps is None:
        return []
    return ["--steps", str(steps), "--solver", solver, "--opts", f"sampler.guidance.reguide={str(reguide).lower()}"]


def make_sets(out: Path, names, limit):
    """{set name: test set folder} for ``names`` (blind: severity thirds; chains: data.foreign_chains)."""
    sets = {}
    for name in names:
        folder = out / name / "testset"
        if name == "blind":
            make_testset(ROOT / SOURCE, folder, resolution=64, seed=0, config=ROOT / DEGRADATION,
                         severity_thirds=True, limit=limit)
        else:
            make_chain_testset(ROOT / SOURCE, folder, name, resolution=64, seed=0, limit=limit)
        sets[name] = folder
    return sets


def run_set(testset: Path, out: Path, table, nproc: int):
    """Every row of ``table`` on one test set; their summaries over the faces every row restored."""
    faces = {p.stem for p in list_images(testset / "lq")}
    for index, (method, steps, solver, reguide) in enumerate(table):
        if faces <= {r["key"] for r in read_records(row_dir(out, index, method))}:
            continue  # restored by an earlier run: no process to start
        run_row(index, method, [], testset / "lq", testset / "hq", out, nproc, row_flags(index, steps, solver, reguide))
    records = [read_records(row_dir(out, i, row[0])) for i, row in enumerate(table)]
    common = set.intersection(*(set(r["key"] for r in recs) for recs in records))
    return [summarise([r for r in recs if r["key"] in common], {})["all"] for recs in records]


def markdown(table, results) -> str:
    lines = ["| method | steps | solver | guided | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
             "|---|---:|---|---|" + "---:|" * len(COLUMNS)]
    for (method, steps, solver, reguide), summary in zip(table, results):
        cells = [f"{summary[key]:.{digits}f}" for key, _, digits in COLUMNS]
        lines.append(f"| {LABELS[method]} | {steps or '-'} | {solver or '-'} | {GUIDED[method, reguide]} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(table, sections) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["testset", "method", "steps", "solver", "reguide", "n"] + [key for key, _, _ in COLUMNS])
    for name, results in sections:
        for (method, steps, solver, reguide), summary in zip(table, results):
            writer.writerow([name, method, steps or "", solver or "", "" if reguide is None else reguide, summary["n"]]
                            + [f"{summary[key]:.6g}" for key, _, _ in COLUMNS])
    return buf.getvalue()


def plot(table, sections, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sections), 2, figsize=(10, 3.6 * len(sections)), squeeze=False)
    for (name, results), (ax_psnr, ax_lpips) in zip(sections, axes):
        for method, solver, reguide in sorted({(m, s, g) for m, _, s, g in table if m in METHODS}):
            points = sorted((r["nfe"], r["psnr"], r["lpips_alex"]) for row, r in zip(table, results)
                            if row[0] == method and row[2:] == (solver, reguide))
            label = f"{LABELS[method]}, {solver}" + (", guided twice" if reguide else "")
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
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 50, 25, 12])
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--reguide-steps", type=int, nargs="*", default=[50, 25, 12],
                        help="step counts of the DynFaceRestore rows with sampler.guidance.reguide")
    parser.add_argument("--sets", nargs="+", choices=["blind"] + sorted(CHAINS), default=["blind"] + sorted(CHAINS))
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args(argv)
    table = rows(args.steps, args.solvers, args.reguide_steps)
    sections = [(name, run_set(folder, args.out / name, table, args.nproc))
                for name, folder in make_sets(args.out, args.sets, args.limit).items()]
    command = " ".join(["python scripts/evaluate_steps.py"] + (argv if argv is not None else sys.argv[1:]))
    header = (f"Command: `{command}`; machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
              f"{platform.system()}; {date.today().isoformat()}.\n\n")
    text = header + "\n".join(f"### {name} ({results[0]['n']} faces)\n\n{markdown(table, results)}"
                              for name, results in sections)
    write_bytes_atomic(args.out / "frontier.md", text.encode())
    write_bytes_atomic(args.out / "frontier.csv", csv_text(table, sections).encode())
    plot(table, sections, args.out / "frontier.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
