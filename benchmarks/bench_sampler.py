"""End-to-end DifFace vs DynFaceRestore: time per face on a mixed-severity set, throughput per batch size,
peak memory per batch size.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_sampler --resolution 512 --respacing ddim10 --repeats 1

Mixed set: one real face per severity third, blurred at sigma_512 = ``--sigmas512`` (default: the
mid-points 2.67, 8, 13.33 of the thirds of [0, 16]); DynFaceRestore's SDE is set to return exactly that
sigma (benchmarks/common.py), so its DSST start follows the severity, while DifFace starts at t = 400
for every face. Both restore the same inputs, alternately, in one process (the UNet weights shared).

Step counts. ``--respacing ddim10`` keeps the timesteps 0, 100, ..., 900: DifFace's t = 400 is index 4
(5 UNet evaluations instead of the 101 of ddim250) and a DSST start t_1 becomes the first index with
timestep >= t_1, i.e. the ddim250 counts divided by about 25 (rounded up to the 100-step grid). The
table also lists the exact counts at ddim250 (from the same DSST table), which a GPU run would spend.

Memory (``--mem-batches``): one child process per batch size, which builds the sampler and runs one
guided DynFaceRestore step (UNet + guidance + DGSA; ``--mem-mode restore`` runs the whole restore);
reported: peak RSS (ru_maxrss) of the child and its increase over the RSS after loading the networks; on
CUDA torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import common

DEFAULT_SIGMAS_512 = (8.0 / 3.0, 8.0, 40.0 / 3.0)
SEVERITY = ("mild", "medium", "severe")


def _samplers(wd: Path, args):
    from sampler import FaceRestoreSampler, load_sample_config

    faces = common.default_faces(common.NUM_DSST_FACES)
    dfr = FaceRestoreSampler(load_sample_config(common.make_setup(wd, args.resolution, faces, args.respacing)),
                             device=args.device)
    dif = FaceRestoreSampler(load_sample_config(common.make_setup(wd, args.resolution, faces, args.respacing,
                                                                  method="difface")), device=args.device)
    dif.model = dfr.model  # one copy of the prior
    return dfr, dif, faces


def _nfe(table, sigma_512: float, respacing: str, sigma_min_512: float = 0.5) -> int:
    """UNet evaluations of a DynFaceRestore image whose level 1 has this sigma: DSST start index + 1."""
    from models.respace import space_timesteps

    steps = sorted(space_timesteps(1000, respacing))
    t1 = int(table.start_step(max(sigma_512, sigma_min_512), resolution=512))
    return int(table.respaced_index(t1, steps)) + 1


def _ddim250_nfe(dfr, sigma_px: float) -> int:
    return _nfe(dfr.dsst, sigma_px * 512.0 / dfr.resolution, "ddim250", dfr.dblm.sigma_min_512)


def _projection(wd: Path, args):
    """Time per face composed from measured components (``--project UNET GUIDE DBLM RM0`` seconds):
    DifFace = RM0 + NFE x UNet, DynFaceRestore = DBLM + NFE x (UNet + guidance/DGSA/step overhead)."""
    from models.dsst import DSSTTable

    unet, guide, dblm, rm0 = args.project
    table = DSSTTable.load(common.dsst_table(wd, args.resolution, common.default_faces(common.NUM_DSST_FACES)))
    rows, mean = [], {}
    for respacing in (args.respacing, "ddim250"):
        dif_nfe = common.difface_start(respacing) + 1
        for method in ("DifFace", "DynFaceRestore"):
            times = []
            for i, s512 in enumerate(args.sigmas512):
                nfe = dif_nfe if method == "DifFace" else _nfe(table, s512, respacing)
                sec = rm0 + nfe * unet if method == "DifFace" else dblm + nfe * (unet + guide)
                times.append(sec)
                rows.append([respacing, SEVERITY[i] if len(args.sigmas512) == 3 else i, f"{s512:.2f}", method, nfe,
                             sec])
            mean[(respacing, method)] = sum(times) / len(times)
    summary = [[r, m, v, f"{v / mean[(r, 'DifFace')]:.3f}"] for (r, m), v in mean.items()]
    return rows, summary


def _mixed(dfr, dif, faces, args):
    rows, per_method = [], {"DifFace": [], "DynFaceRestore": []}
    lqs = [common.degraded_faces([faces[i % len(faces)]], args.resolution, [s]).to(args.device)
           for i, s in enumerate(args.sigmas512)]
    variants, info = {}, {}
    for i, (s512, lq) in enumerate(zip(args.sigmas512, lqs)):
        sig_px = s512 * args.resolution / 512.0

        def run_dif(lq=lq, key=("DifFace", i)):
            info[key] = dif.restore(lq, seeds=[i])

        def run_dfr(lq=lq, key=("DynFaceRestore", i), sig_px=sig_px):
            common.set_sde_sigma(dfr, sig_px)
            info[key] = dfr.restore(lq, seeds=[i])

        variants[("DifFace", i)] = run_dif
        variants[("DynFaceRestore", i)] = run_dfr
    times = common.interleaved(variants, args.repeats, device=args.device)
    for (method, i), ts in times.items():
        out, m = info[(method, i)], common.median(ts)
        per_method[method].append(m)
        s512 = args.sigmas512[i]
        nfe250 = 101 if method == "DifFace" else _ddim250_nfe(dfr, s512 * args.resolution / 512.0)
        rows.append([SEVERITY[i % 3] if len(args.sigmas512) == 3 else i, f"{s512:.2f}", method,
                     int(out.start_index[0]), int(out.start_t[0]), int(out.nfe[0]), nfe250, m, common.spread(ts)])
    mean = {k: sum(v) / len(v) for k, v in per_method.items()}
    summary = [[k, v, f"{v / mean['DifFace']:.3f}"] for k, v in mean.items()]
    return rows, summary, mean


def _throughput(dfr, dif, faces, args):
    rows = []
    mid = args.sigmas512[len(args.sigmas512) // 2]
    common.set_sde_sigma(dfr, mid * args.resolution / 512.0)
    for b in args.batches:
        lq = common.degraded_faces([faces[j % len(faces)] for j in range(b)], args.resolution, [mid] * b)
        lq = lq.to(args.device)
        seeds = list(range(b))
        times = common.interleaved({"DifFace": lambda: dif.restore(lq, seeds),
                                    "DynFaceRestore": lambda: dfr.restore(lq, seeds)}, args.repeats,
                                   device=args.device)
        for name, ts in times.items():
            m = common.median(ts)
            rows.append([b, name, m, common.spread(ts), m / b, b / m])
    return rows


def _memory_child(args) -> int:
    """Child process: build, measure the baseline RSS, run one configuration, print one JSON line."""
    from sampler import _Guide

    dev = torch.device(args.device)
    with common.workdir(args) as wd:
        dfr, dif, faces = _samplers(Path(wd), args)
        b = args.mem_child
        mid = args.sigmas512[len(args.sigmas512) // 2]
        sig_px = mid * args.resolution / 512.0
        common.set_sde_sigma(dfr, sig_px)
        lq = common.degraded_faces([faces[j % len(faces)] for j in range(b)], args.resolution, [mid] * b).to(dev)
        base = common.current_rss_mb()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            if args.mem_mode == "restore":
                dfr.restore(lq, seeds=list(range(b)))
            else:
                sig = torch.full((b, 3), sig_px, device=dev) * torch.tensor([1.0, 0.75, 0.5625], device=dev)
                levels = [lq] * 3
                t = torch.full((b,), common.difface_start(args.respacing), dtype=torch.long, device=dev)
                guide = _Guide(dfr, levels, sig, dfr._level_steps(sig))
                x_t = dfr.diffusion.q_sample(lq, t)
                dfr.diffusion.ddim_sample(dfr.model, x_t, t, eta=0.5, x0_modifier=guide.modifier(torch.arange(b)))
        common.sync(dev)
        out = {"batch": b, "seconds": time.perf_counter() - t0, "rss_after_load_mb": base,
               "peak_rss_mb": common.peak_rss_mb()}
        if dev.type == "cuda":
            out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    print(json.dumps(out))
    return 0


def _memory(args, wd: str):
    rows = []
    for b in args.mem_batches:
        child = ["--resolution", str(args.resolution), "--respacing", args.respacing, "--device", args.device,
                 "--workdir", wd, "--mem-mode", args.mem_mode, "--mem-child", str(b),
                 "--sigmas512", *[str(s) for s in args.sigmas512]]
        res = common.run_child("benchmarks.bench_sampler", child)
        rows.append([b, args.mem_mode, res["rss_after_load_mb"], res["peak_rss_mb"],
                     res["peak_rss_mb"] - res["rss_after_load_mb"], res.get("cuda_max_allocated_mb", "n/a (CPU)"),
                     res["seconds"]])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser, repeats=1)
    parser.add_argument("--respacing", default="ddim10")
    parser.add_argument("--sigmas512", type=float, nargs="+", default=list(DEFAULT_SIGMAS_512))
    parser.add_argument("--batches", type=int, nargs="*", default=[], help="throughput batch sizes")
    parser.add_argument("--mem-batches", type=int, nargs="*", default=[])
    parser.add_argument("--mem-mode", choices=("step", "restore"), default="step")
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument("--project", type=float, nargs=4, default=None, metavar=("UNET", "GUIDE", "DBLM", "RM0"),
                        help="also compose the mixed set's time per face from measured seconds (no sampling)")
    parser.add_argument("--mem-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mem_child is not None:
        return _memory_child(args)

    tables, notes = [], [f"resolution {args.resolution}, respacing {args.respacing} (DifFace start index "
                         f"{common.difface_start(args.respacing)}, t = 400), {args.repeats} repeats (round-robin), "
                         f"random weights; constant SDE (sigma_hat = the input's sigma)"]
    with common.workdir(args) as wd:
        if not args.skip_mixed or args.batches:
            dfr, dif, faces = _samplers(Path(wd), args)
            if not args.skip_mixed:
                rows, summary, mean = _mixed(dfr, dif, faces, args)
                tables.append("Mixed-severity set, one face per row (batch 1):\n\n" + common.markdown_table(
                    ["severity", "sigma_512", "method", "start index", "start t", "NFE", "NFE at ddim250",
                     "median s", "min-max s"], rows))
                tables.append("Mean time per face over the set:\n\n" + common.markdown_table(
                    ["method", "mean s / face", "x DifFace"], summary))
                verdict = "holds" if mean["DynFaceRestore"] <= mean["DifFace"] else "does NOT hold"
                notes.append(f"claim 'DynFaceRestore mean time per face <= DifFace' on this set: {verdict}")
            if args.batches:
                tables.append("Throughput (all faces at the middle severity):\n\n" + common.markdown_table(
                    ["batch", "method", "median s / batch", "min-max s", "s / image", "images / s"],
                    _throughput(dfr, dif, faces, args)))
            del dfr, dif
        if args.project:
            rows, summary = _projection(Path(wd), args)
            tables.append("Mixed set, composed from measured component times (--project), not run end to end:"
                          "\n\n" + common.markdown_table(["respacing", "severity", "sigma_512", "method", "NFE",
                                                         "composed s"], rows))
            tables.append(common.markdown_table(["respacing", "method", "mean s / face", "x DifFace"], summary))
        if args.mem_batches:
            tables.append("Peak memory, one child process per row:\n\n" + common.markdown_table(
                ["batch", "mode", "RSS after load MiB", "peak RSS MiB", "increase MiB", "CUDA max allocated MiB",
                 "run s"], _memory(args, str(wd))))
    notes += list(args.note)
    common.report(f"Sampler end to end, {args.resolution} px", ["benchmarks.bench_sampler",
                  *(sys.argv[1:] if argv is None else argv)], tables, notes, device=args.device, write=args.write,
                  path=Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
