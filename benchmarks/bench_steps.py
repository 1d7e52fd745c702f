"""Time per face against the step count, composed from parts measured in one run, and its ratio to DifFace.

OMP_NUM_THREADS=1 python -m benchmarks.bench_steps --resolution 512 --faces 12 --steps 250 100 50 25 12

DynFaceRestore = DBLM + NFE x UNet + n_fresh x fresh step + (NFE - n_fresh) x reused step,
DifFace        = RM0 + 101 x (UNet + unguided step),   n_fresh = ceil(NFE / dgsa_every).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import common
from benchmarks.bench_sampler import _components, _mixed_set, _nfe, _samplers

DEFAULT = "ddim250"


def compose(dfr, mixed, comp, steps):
    """Rows (N, mean NFE, UNet s, DBLM s, DGSA s, other step s, total s, UNet share, x DifFace default) and
    DifFace's default seconds per face."""
    every = int(dfr.scfg.guidance.dgsa_every)
    unet, dblm = comp["UNet"], comp["DBLM (DynFaceRestore)"]
    fresh_rest = comp["step w/o UNet, guided, fresh DGSA map"]
    reused_rest = comp["step w/o UNet, guided, reused DGSA map"]
    dgsa = fresh_rest - reused_rest
    dif_nfe = common.difface_start(DEFAULT) + 1
    difface = comp["RM0 (DifFace)"] + dif_nfe * (unet + comp["step w/o UNet, unguided (DifFace)"])
    rows = [
        [
            "DifFace default",
            DEFAULT,
            dif_nfe,
            dif_nfe * unet,
            comp["RM0 (DifFace)"],
            "-",
            dif_nfe * comp["step w/o UNet, unguided (DifFace)"],
            difface,
            dif_nfe * unet / difface,
            1.0,
        ]
    ]
    for n in steps:
        nfes = [_nfe(dfr, s512, f"ddim{n}") for _, s512, _ in mixed]
        parts = []
        for nfe in nfes:
            fresh = -(-nfe // every)
            parts.append((nfe * unet, fresh * dgsa, nfe * reused_rest))
        mean = [sum(p[k] for p in parts) / len(parts) for k in range(3)]
        total = dblm + sum(mean)
        rows.append(
            [
                "DynFaceRestore",
                f"ddim{n}",
                sum(nfes) / len(nfes),
                mean[0],
                dblm,
                mean[1],
                mean[2],
                total,
                mean[0] / total,
                total / difface,
            ]
        )
    return rows, difface


def demo_end_to_end(args):
    """Rows (method, steps, solver, mean NFE, s / face, x DifFace's paper preset) of ``--demo-lq``."""
    import torch

    from inference.inputs import load_image, prepare_aligned
    from inference.interactive import MAX_SIDE, MIN_SIDE
    from inference.steps import preset_overrides, presets, steps_overrides
    from sampler import FaceRestoreSampler, load_sample_config
    from utils.image_io import img2tensor, list_images

    resolution = int(load_sample_config(common.SAMPLE_64).resolution)  # read as the command line reads faces
    lq = img2tensor(
        [prepare_aligned(load_image(p, MIN_SIDE, MAX_SIDE), resolution).image for p in list_images(args.demo_lq)]
    )
    batches = [(lq[i : i + args.bs], list(range(i, min(i + args.bs, len(lq))))) for i in range(0, len(lq), args.bs)]
    paper = presets()["paper"]
    chosen = [(m, paper["steps"], paper["solver"], "paper preset") for m in ("difface", "dynfacerestore")]
    chosen += [("dynfacerestore", n, solver, "config") for n in args.steps for solver in args.solvers]
    samplers, nfe = {}, {}
    for method, steps, solver, source in chosen:
        base = [f"sampler.method={method}"]
        overrides = (
            preset_overrides(common.SAMPLE_64, base, "paper")
            if source == "paper preset"
            else steps_overrides(common.SAMPLE_64, base, steps, solver)
        )
        samplers[(method, steps, solver, source)] = FaceRestoreSampler.from_config(
            common.SAMPLE_64, overrides, device=args.device
        )

    def run(key):
        def restore_all():
            counts = [samplers[key].restore(images, seeds).nfe for images, seeds in batches]
            nfe[key] = float(torch.cat(counts).double().mean())

        return restore_all

    times = common.interleaved(
        {key: run(key) for key in samplers}, args.repeats, warmup=args.warmup, device=args.device
    )
    per_face = {key: common.median(ts) / len(lq) for key, ts in times.items()}
    base = per_face[chosen[0]]
    guided = {
        (m, r): ("-" if m == "difface" else "twice" if r else "once")
        for m in ("difface", "dynfacerestore")
        for r in (False, True)
    }
    return [
        [
            method,
            steps,
            solver,
            guided[method, bool(samplers[key].scfg.guidance.reguide)],
            nfe[key],
            per_face[key],
            common.spread([t / len(lq) for t in times[key]]),
            per_face[key] / base,
        ]
        for key, (method, steps, solver, _) in zip(samplers, chosen)
    ], len(lq)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser, repeats=1)
    parser.add_argument("--faces", type=int, default=12, help="faces of the mixed set (thirds)")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 100, 50, 25, 12])
    parser.add_argument("--component-repeats", type=int, default=5, help="repeats of the component timings")
    parser.add_argument("--demo-lq", type=Path, default=None, help="LQ folder: time the real demo models on it")
    parser.add_argument("--solvers", nargs="+", default=["ddim", "dpmpp_2m"], help="with --demo-lq")
    parser.add_argument("--bs", type=int, default=10, help="batch size with --demo-lq (the evaluation's)")
    args = parser.parse_args(argv)
    command = ["benchmarks.bench_steps", *(sys.argv[1:] if argv is None else argv)]
    if args.demo_lq is not None:
        rows, count = demo_end_to_end(args)
        table = common.markdown_table(
            [
                "method",
                "steps",
                "solver",
                "guided",
                "mean NFE",
                "s / face",
                "min-max s / face",
                "x DifFace (paper preset)",
            ],
            rows,
        )
        common.report(
            f"Demo models end to end, {count} faces, batches of {args.bs}",
            command,
            [table],
            args.note,
            device=args.device,
            write=args.write,
            path=Path(args.out),
        )
        return 0
    args.respacing = DEFAULT  # the samplers' schedule; the components do not depend on it
    with common.workdir(args) as wd:
        dfr, dif, _ = _samplers(Path(wd), args)
        mixed = _mixed_set(Path(wd), args)
        comp = _components(dfr, dif, mixed, args)
        rows, _ = compose(dfr, mixed, comp, args.steps)
    tables = [
        f"Components (median s of {args.component_repeats}, batch 1, this run):\n\n"
        + common.markdown_table(["component", "s"], [[k, v] for k, v in comp.items()]),
        f"Mean per face over the mixed set ({len(mixed)} faces), composed from the components:\n\n"
        + common.markdown_table(
            [
                "method",
                "respacing",
                "mean NFE",
                "UNet s",
                "RM0 / DBLM s",
                "DGSA s",
                "other step s",
                "total s",
                "UNet share",
                "x DifFace default",
            ],
            rows,
        ),
    ]
    notes = [
        f"resolution {args.resolution}, random weights at the real layouts, UNet precision {args.precision}; "
        f"dgsa_every = {dfr.scfg.guidance.dgsa_every}; constant SDE (sigma_hat = the face's sigma*)"
    ]
    common.report(
        f"Time per face against the step count, {args.resolution} px",
        command,
        tables,
        notes + args.note,
        device=args.device,
        write=args.write,
        path=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
