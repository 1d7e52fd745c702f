"""DBLM cost (SDE, TM, RM, the whole K-level forward) against DifFace's single RM0 pass.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_dblm --resolution 512 --batch 1 --repeats 2

Real faces blurred at sigma_512 = ``--sigma512``, random weights at the real layouts, round-robin.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks import common


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser, repeats=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--sigma512", type=float, default=8.0)
    args = parser.parse_args(argv)

    from sampler import FaceRestoreSampler, load_sample_config

    dev = torch.device(args.device)
    with common.workdir(args) as wd:
        faces = common.default_faces(common.NUM_DSST_FACES)
        cfg = load_sample_config(common.make_setup(Path(wd), args.resolution, faces, "ddim10"))
        dfr = FaceRestoreSampler(cfg, device=dev)
        rm0 = FaceRestoreSampler(
            load_sample_config(common.make_setup(Path(wd), args.resolution, faces, "ddim10", method="difface")),
            device=dev,
        ).restorer
        sig_px = args.sigma512 * args.resolution / 512.0
        common.set_sde_sigma(dfr, sig_px)
        y = common.degraded_faces(
            [faces[j % len(faces)] for j in range(args.batch)], args.resolution, [args.sigma512] * args.batch
        ).to(dev)
        dblm = dfr.dblm
        s1 = torch.full((args.batch,), sig_px, device=dev)
        with torch.no_grad():
            y1 = dblm.tm(y, s1)
            variants = {
                "SDE": lambda: dblm.sde(y),
                "TM": lambda: dblm.tm(y, s1),
                "RM": lambda: dblm.rm(y, y1, dblm.rho * s1),
                f"DBLM forward (K = {dblm.num_levels})": lambda: dblm(y),
                "RM0 restorer (DifFace)": lambda: rm0.restore(y),
            }
            times = common.interleaved(variants, args.repeats, warmup=args.warmup, device=dev)
    med = {k: common.median(v) for k, v in times.items()}
    rm0_s = med["RM0 restorer (DifFace)"]
    rows = [
        [args.batch, name, m, common.spread(times[name]), f"{m / rm0_s:.2f}", f"{m / args.batch:.4g}"]
        for name, m in med.items()
    ]
    params = {
        name: sum(p.numel() for p in net.parameters()) / 1e6
        for name, net in (("SDE", dblm.sde), ("TM", dblm.tm), ("RM", dblm.rm), ("RM0", rm0))
    }
    notes = [
        f"resolution {args.resolution}, batch {args.batch}, sigma_512 {args.sigma512}, {args.repeats} repeats "
        f"(round-robin), {args.warmup} warm-up rounds, random weights",
        "parameters (M): " + ", ".join(f"{k} {v:.2f}" for k, v in params.items()),
    ] + list(args.note)
    table = common.markdown_table(["batch", "network", "median s", "min-max s", "x RM0", "s / image"], rows)
    common.report(
        f"DBLM cost, {args.resolution} px",
        ["benchmarks.bench_dblm", *(sys.argv[1:] if argv is None else argv)],
        [table],
        notes,
        device=args.device,
        write=args.write,
        path=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
