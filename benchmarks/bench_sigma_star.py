"""sigma* (data/sigma_star.py): the Fourier search against the spatial reference, speed and agreement.

    OMP_NUM_THREADS=2 python -m benchmarks.bench_sigma_star --resolution 512 --faces 4 --repeats 3

Real faces degraded by configs/degradation/difface_blind.yaml, one face per call, both searches round-robin:
median wall and CPU seconds per face and the largest difference of their results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import common

BLIND = "configs/degradation/difface_blind.yaml"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser, repeats=3)
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from data.degradation import degrade, load_degradation_config
    from data.sigma_star import sigma_star, sigma_star_spatial
    from models.dsst_build import load_faces

    dev = torch.device(args.device)
    faces = common.default_faces(args.faces)
    hq = load_faces(faces, args.resolution)
    cfg, rng = load_degradation_config(common.REPO_ROOT / BLIND), np.random.default_rng(args.seed)
    lq = (
        torch.stack(
            [
                torch.from_numpy(degrade(((x.permute(1, 2, 0).numpy() + 1) / 2), rng, cfg)[0]).permute(2, 0, 1)
                for x in hq
            ]
        )
        * 2
        - 1
    )
    hq, lq = hq.to(dev), lq.to(dev)
    searches = {"Fourier (sigma_star)": sigma_star, "spatial (sigma_star_spatial)": sigma_star_spatial}
    results = {name: [] for name in searches}
    cpu = {name: [] for name in searches}
    times = {name: [] for name in searches}

    def timed(name, one):
        def call():
            c0 = time.process_time()
            results[name].append(searches[name](*one))
            cpu[name].append(time.process_time() - c0)

        return call

    for i in range(len(faces)):
        one = (hq[i : i + 1], lq[i : i + 1])
        variants = {name: timed(name, one) for name in searches}
        for name, t in common.interleaved(variants, args.repeats, warmup=args.warmup, device=dev).items():
            times[name] += t
    fast = torch.cat(results["Fourier (sigma_star)"]).cpu()
    ref = torch.cat(results["spatial (sigma_star_spatial)"]).cpu()
    diff = (fast - ref).abs()
    rows = [
        [name, common.median(t), common.spread(t), common.median(cpu[name][-len(t) :])] for name, t in times.items()
    ]
    notes = [
        f"resolution {args.resolution}, {len(faces)} faces x {args.repeats} repeats, one face per call, "
        f"{BLIND} (seed {args.seed}); sigma* of the faces {ref[:: args.repeats].tolist()} px",
        f"largest |Fourier - spatial| {float(diff.max()):.3f} px, faces with a difference: "
        f"{int((diff > 0).sum())} of {diff.numel()} calls",
        *args.note,
    ]
    table = common.markdown_table(["search", "median s / face", "min-max s", "median CPU s / face (all threads)"], rows)
    common.report(
        f"sigma* search, {args.resolution} px",
        ["benchmarks.bench_sigma_star", *(sys.argv[1:] if argv is None else argv)],
        [table],
        notes,
        device=args.device,
        write=args.write,
        path=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
