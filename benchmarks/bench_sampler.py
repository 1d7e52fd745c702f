"""DifFace against DynFaceRestore: time per face on a mixed-severity set, throughput, peak memory.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_sampler --resolution 512 --respacing ddim10 --repeats 1

End to end (methods round-robin, batch 1), composed at ddim250 from timed components (as
``benchmarks.bench_steps``), and peak memory per batch size in child processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from benchmarks import common

SEVERITY = ("mild", "medium", "severe")


def _samplers(wd: Path, args, sampler: Optional[dict] = None):
    """DynFaceRestore and DifFace samplers of the benchmark setup sharing one UNet; ``sampler`` overrides
    entries of the config's sampler section (e.g. ``compile``)."""
    from sampler import FaceRestoreSampler, load_sample_config

    faces = common.default_faces(common.NUM_DSST_FACES)
    dfr, dif = (
        FaceRestoreSampler(
            load_sample_config(
                common.make_setup(wd, args.resolution, faces, args.respacing, method=method, sampler=sampler)
            ),
            device=args.device,
            precision=args.precision,
        )
        for method in ("dynfacerestore", "difface")
    )
    dif.model, dif.denoiser = dfr.model, dfr.denoiser  # one copy of the prior (and of its compiled form)
    return dfr, dif, faces


def _compiled_samplers(wd: Path, args, chosen):
    """The samplers with ``sampler.compile`` on (``--compile BACKEND``) and the seconds of each one's first
    restore of the first chosen face, which compiles the UNet at batch 1."""
    from models.dsst_build import load_faces

    dfr, dif, _ = _samplers(
        wd, args, {"compile": {"enabled": True, "backend": args.compile, "mode": args.compile_mode}}
    )
    lq = load_faces([chosen[0][0]], args.resolution).to(args.device)
    common.set_sde_sigma(dfr, chosen[0][1] * args.resolution / 512.0)
    first = {}
    for name, smp in (("DifFace, compiled", dif), ("DynFaceRestore, compiled", dfr)):
        common.sync(args.device)
        t0 = time.perf_counter()
        smp.restore(lq, seeds=[0])
        common.sync(args.device)
        first[name] = time.perf_counter() - t0
    return dfr, dif, first


def _nfe(dfr, sigma_512: float, respacing: str) -> int:
    """UNet evaluations of a DynFaceRestore face whose level 1 has this sigma: DSST start index + 1."""
    from models.respace import space_timesteps

    steps = sorted(space_timesteps(1000, respacing))
    t1 = int(dfr.dsst.start_step(max(sigma_512, dfr.dblm.sigma_min_512), resolution=512))
    return int(dfr.dsst.respaced_index(t1, steps)) + 1


def _mixed_set(wd: Path, args):
    """(LQ path, sigma*_512, severity) of every face of the thirds set (module docstring)."""
    set_dir = common.thirds_testset(wd, args.resolution, args.faces)
    records = json.loads((set_dir / "degradations.json").read_text())["images"]
    return [(set_dir / "lq" / f"{r['name']}.png", float(r["sigma_star_512"]), r["severity"]) for r in records]


def _end_to_end_faces(mixed, args):
    """The first ``--e2e-per-third`` faces of each third of the mixed set."""
    return [m for sev in SEVERITY for m in [x for x in mixed if x[2] == sev][: args.e2e_per_third]]


def _end_to_end(samplers, mixed, args):
    """Every (label, sampler) of ``samplers`` on :func:`_end_to_end_faces`, batch 1, round-robin."""
    from models.dsst_build import load_faces

    chosen = _end_to_end_faces(mixed, args)
    variants, info = {}, {}
    for i, (path, s512, _severity) in enumerate(chosen):
        lq = load_faces([path], args.resolution).to(args.device)
        for label, smp in samplers.items():

            def run(smp=smp, lq=lq, i=i, key=(label, i), sig_px=s512 * args.resolution / 512.0):
                if smp.dblm is not None:
                    common.set_sde_sigma(smp, sig_px)
                info[key] = smp.restore(lq, seeds=[i])

            variants[(label, i)] = run
    times = common.interleaved(variants, args.repeats, warmup=args.warmup, device=args.device)
    rows, per_method = [], {label: [] for label in samplers}
    for (method, i), ts in times.items():
        out, m = info[(method, i)], common.median(ts)
        per_method[method].append(m)
        rows.append(
            [
                chosen[i][2],
                f"{chosen[i][1]:.2f}",
                method,
                int(out.start_index[0]),
                int(out.start_t[0]),
                int(out.nfe[0]),
                m,
                common.spread(ts),
            ]
        )
    mean = {k: sum(v) / len(v) for k, v in per_method.items()}
    return rows, mean


def _components(dfr, dif, mixed, args):
    """Seconds of RM0, DBLM, the UNet and a step without the UNet (unguided, guided with a fresh or a reused
    DGSA map; a stub returns the UNet output, as in bench_step_breakdown), batch 1, on a medium face."""
    from benchmarks.bench_step_breakdown import _CachedOutput
    from models.dsst_build import load_faces
    from sampler import _Guide

    dev = torch.device(args.device)
    path, s512, _ = sorted(mixed, key=lambda m: m[1])[len(mixed) // 2]
    lq = load_faces([path], args.resolution).to(dev)
    common.set_sde_sigma(dfr, s512 * args.resolution / 512.0)
    with torch.no_grad():
        levels = dfr.dblm(lq)
        sig = levels.sigmas.float()
        guide = _Guide(dfr, [img.float() for img in levels.images], sig, dfr._level_steps(sig))
        start = common.difface_start(args.respacing)
        t = torch.full((1,), start, dtype=torch.long, device=dev)
        x_t = dfr.diffusion.q_sample(levels.images[0].float(), t)
        t_orig = dfr.timestep_map[t]
        stub = _CachedOutput(dfr.model(x_t, t_orig))

        def step(guided, fresh=()):
            return common.guided_step(dfr, guide if guided else None, stub, x_t, t, 0.5, fresh=fresh)

        times = common.interleaved(
            {
                "RM0 (DifFace)": lambda: dif.restorer.restore(lq),
                "DBLM (DynFaceRestore)": lambda: dfr.dblm(lq),
                "UNet": lambda: dfr.model(x_t, t_orig),
                "step w/o UNet, unguided (DifFace)": lambda: step(False),
                "step w/o UNet, guided, fresh DGSA map": lambda: step(True, [0]),
                "step w/o UNet, guided, reused DGSA map": lambda: step(True),
            },
            args.component_repeats,
            warmup=args.warmup,
            device=dev,
        )
    return {name: common.median(ts) for name, ts in times.items()}


def _composed(dfr, mixed, comp, args):
    """Time per face at ddim250 from the measured components (module docstring), for the config's
    dgsa_every and for 1, 8, 16; returns the rows and the mean seconds per face of each method label."""
    configured = int(dfr.scfg.guidance.dgsa_every)
    dif_nfe = common.difface_start("ddim250") + 1
    unet = comp["UNet"]
    dif_s = comp["RM0 (DifFace)"] + dif_nfe * (unet + comp["step w/o UNet, unguided (DifFace)"])
    counts = {sev: sum(1 for m in mixed if m[2] == sev) for sev in SEVERITY}
    counts["all"] = len(mixed)
    rows, mean = [[sev, counts[sev], "DifFace", dif_nfe, dif_s] for sev in counts], {"DifFace": dif_s}
    nfes = [(_nfe(dfr, s512, "ddim250"), sev) for _, s512, sev in mixed]
    for every in sorted({1, 8, 16, configured}):
        label = f"DynFaceRestore, dgsa_every = {every}" + (" (config)" if every == configured else "")
        per = {sev: [] for sev in SEVERITY}
        for nfe, sev in nfes:
            fresh = -(-nfe // every)
            seconds = (
                comp["DBLM (DynFaceRestore)"]
                + nfe * unet
                + fresh * comp["step w/o UNet, guided, fresh DGSA map"]
                + (nfe - fresh) * comp["step w/o UNet, guided, reused DGSA map"]
            )
            per[sev].append((nfe, seconds))
        per["all"] = [v for sev in SEVERITY for v in per[sev]]
        for sev, vals in per.items():
            count = len(vals)
            rows.append([sev, count, label, sum(v[0] for v in vals) / count, sum(v[1] for v in vals) / count])
        mean[label] = rows[-1][-1]
    return rows, mean, f"DynFaceRestore, dgsa_every = {configured} (config)"


def _throughput(dfr, dif, faces, args):
    rows = []
    mid = args.sigma512
    common.set_sde_sigma(dfr, mid * args.resolution / 512.0)
    for b in args.batches:
        lq = common.degraded_faces([faces[j % len(faces)] for j in range(b)], args.resolution, [mid] * b)
        lq = lq.to(args.device)
        seeds = list(range(b))
        times = common.interleaved(
            {
                "DifFace": lambda lq=lq, seeds=seeds: dif.restore(lq, seeds),
                "DynFaceRestore": lambda lq=lq, seeds=seeds: dfr.restore(lq, seeds),
            },
            args.repeats,
            warmup=args.warmup,
            device=args.device,
        )
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
        mid = args.sigma512
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
                start = common.difface_start(args.respacing)
                t = torch.full((b,), start, dtype=torch.long, device=dev)
                guide = _Guide(dfr, levels, sig, dfr._level_steps(sig))
                x_t = dfr.diffusion.q_sample(lq, t)
                common.guided_step(dfr, guide, dfr.model, x_t, t, 0.5, fresh=list(range(b)))
        common.sync(dev)
        out = {
            "batch": b,
            "seconds": time.perf_counter() - t0,
            "rss_after_load_mb": base,
            "peak_rss_mb": common.peak_rss_mb(),
        }
        if dev.type == "cuda":
            out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    print(json.dumps(out))
    return 0


def _memory(args, wd: str):
    rows = []
    for b in args.mem_batches:
        child = [
            "--resolution",
            str(args.resolution),
            "--respacing",
            args.respacing,
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--workdir",
            wd,
            "--mem-mode",
            args.mem_mode,
            "--mem-child",
            str(b),
            "--sigma512",
            str(args.sigma512),
        ]
        res = common.run_child("benchmarks.bench_sampler", child)
        rows.append(
            [
                b,
                args.mem_mode,
                res["rss_after_load_mb"],
                res["peak_rss_mb"],
                res["peak_rss_mb"] - res["rss_after_load_mb"],
                res.get("cuda_max_allocated_mb", "n/a (CPU)"),
                res["seconds"],
            ]
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser, repeats=1)
    parser.add_argument("--respacing", default="ddim10")
    parser.add_argument("--faces", type=int, default=30, help="faces of the mixed set (thirds)")
    parser.add_argument("--e2e-per-third", type=int, default=1, help="faces per third run end to end (0: none)")
    parser.add_argument("--component-repeats", type=int, default=5, help="repeats of the component timings")
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument(
        "--compile",
        default=None,
        metavar="BACKEND",
        help="also run the end-to-end faces with sampler.compile on (this torch.compile backend)",
    )
    parser.add_argument("--compile-mode", default=None, help="sampler.compile.mode, e.g. reduce-overhead")
    parser.add_argument("--sigma512", type=float, default=16.0, help="blur of the throughput / memory inputs")
    parser.add_argument("--batches", type=int, nargs="*", default=[], help="throughput batch sizes")
    parser.add_argument("--mem-batches", type=int, nargs="*", default=[])
    parser.add_argument("--mem-mode", choices=("step", "restore"), default="step")
    parser.add_argument("--mem-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mem_child is not None:
        return _memory_child(args)

    tables, notes = (
        [],
        [
            f"resolution {args.resolution}, respacing {args.respacing} (DifFace start index "
            f"{common.difface_start(args.respacing)}, t = 400), {args.repeats} repeats (round-robin) "
            f"after {args.warmup} warm-up rounds, random weights; constant SDE (sigma_hat = the face's "
            f"sigma*); UNet precision {args.precision} (both methods)"
        ],
    )
    with common.workdir(args) as wd:
        if not args.skip_mixed or args.batches:
            dfr, dif, faces = _samplers(Path(wd), args)
            notes.append(
                f"dgsa_every = {dfr.scfg.guidance.dgsa_every}, DSST tau = {dfr.dsst.tau:.3g} "
                f"(table from {common.NUM_DSST_FACES} celebref512 faces, the config's calibration)"
            )
            if not args.skip_mixed:
                mixed = _mixed_set(Path(wd), args)
                if args.e2e_per_third:
                    samplers, first = {"DifFace": dif, "DynFaceRestore": dfr}, {}
                    if args.compile:
                        dfr_c, dif_c, first = _compiled_samplers(Path(wd), args, _end_to_end_faces(mixed, args))
                        samplers.update({"DifFace, compiled": dif_c, "DynFaceRestore, compiled": dfr_c})
                    rows, mean = _end_to_end(samplers, mixed, args)
                    tables.append(
                        f"End to end at {args.respacing}, batch 1:\n\n"
                        + common.markdown_table(
                            [
                                "severity",
                                "sigma*_512",
                                "method",
                                "start index",
                                "start t",
                                "NFE",
                                "median s",
                                "min-max s",
                            ],
                            rows,
                        )
                        + "\n\n"
                        + common.markdown_table(
                            ["method", "mean s / face", "x DifFace", "first restore s (compiles)"],
                            [[k, v, f"{v / mean['DifFace']:.3f}", first.get(k, "-")] for k, v in mean.items()],
                        )
                    )
                comp = _components(dfr, dif, mixed, args)
                title = f"Components (median s of {args.component_repeats}, batch 1, this run)"
                tables.append(
                    f"{title}:\n\n" + common.markdown_table(["component", "s"], [[k, v] for k, v in comp.items()])
                )
                rows, mean, ours = _composed(dfr, mixed, comp, args)
                tables.append(
                    f"Mixed set ({len(mixed)} faces), composed at ddim250 from the components:\n\n"
                    + common.markdown_table(["severity", "faces", "method", "mean NFE", "mean s / face"], rows)
                )
                verdict = "holds" if mean[ours] <= mean["DifFace"] else "does NOT hold"
                notes.append(
                    f"claim 'DynFaceRestore mean time per face <= DifFace' (composed, ddim250, the config's "
                    f"dgsa_every): {mean[ours]:.4g} s vs {mean['DifFace']:.4g} s "
                    f"(x {mean[ours] / mean['DifFace']:.3f}) -> {verdict}"
                )
            if args.batches:
                tables.append(
                    "Throughput (all faces at --sigma512):\n\n"
                    + common.markdown_table(
                        ["batch", "method", "median s / batch", "min-max s", "s / image", "images / s"],
                        _throughput(dfr, dif, faces, args),
                    )
                )
            del dfr, dif
        if args.mem_batches:
            tables.append(
                "Peak memory, one child process per row:\n\n"
                + common.markdown_table(
                    [
                        "batch",
                        "mode",
                        "RSS after load MiB",
                        "peak RSS MiB",
                        "increase MiB",
                        "CUDA max allocated MiB",
                        "run s",
                    ],
                    _memory(args, str(wd)),
                )
            )
    notes += list(args.note)
    common.report(
        f"Sampler end to end, {args.resolution} px",
        ["benchmarks.bench_sampler", *(sys.argv[1:] if argv is None else argv)],
        tables,
        notes,
        device=args.device,
        write=args.write,
        path=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
