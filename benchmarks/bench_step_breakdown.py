"""One DynFaceRestore sampling step broken into UNet, closed-form guidance, DGSA and the rest.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_step_breakdown --resolution 512 --batches 1 --repeats 3

Components timed round-robin on real faces at t = 400; mean step rest with ``dgsa_every = N``:
(fresh + (N - 1) reused) / N.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from benchmarks import common


class _CachedOutput:
    """Stands in for the UNet: returns a precomputed output, so a step is timed without the network."""

    def __init__(self, output: torch.Tensor):
        self.output = output

    def __call__(self, x, t, **kwargs):
        return self.output


def _inputs(sampler, batch: int, sigma512: float, device):
    from data.blur import gaussian_blur
    from models.dsst_build import load_faces

    res = sampler.resolution
    faces = common.default_faces(min(batch, 8))
    clean = load_faces([faces[j % len(faces)] for j in range(batch)], res).to(device)
    sig1 = sigma512 * res / 512.0
    sigmas = torch.tensor([[sig1, 0.75 * sig1, 0.5625 * sig1]] * batch, device=device)
    levels = [gaussian_blur(clean, sigmas[:, k]).clamp(-1, 1) for k in range(3)]
    index = common.difface_start(sampler.cfg.diffusion.params.timestep_respacing)
    t = torch.full((batch,), index, dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    x_t = sampler.diffusion.q_sample(levels[0], t, noise=torch.randn(levels[0].shape, generator=gen, device=device))
    noise = torch.randn(x_t.shape, generator=gen, device=device)
    eta = torch.full((batch,), 0.5, device=device)
    return levels, sigmas, index, t, x_t, noise, eta


def _first_level_weights(batch: int, num_levels: int, device) -> torch.Tensor:
    """(batch, num_levels) one-hot guidance weights selecting level 1 (the sharpest active one at t = 400)."""
    weights = torch.zeros(batch, num_levels, device=device)
    weights[:, 0] = 1.0
    return weights


def _full_resolution_dgsa(sampler, resolution: int):
    """The config's DGSA with its weights, run at the image size (map_downsample 1)."""
    from utils.config import instantiate

    node = common.architectures(resolution)["dgsa"]
    full = instantiate(dict(node, params=dict(node["params"], map_downsample=1)))
    full.load_state_dict(sampler.dgsa.state_dict())
    return full.to(sampler.device).eval()


def _step_components(sampler, batch, args):
    """Timings of one step's components at ``batch`` (module docstring); returns rows and the medians."""
    from models import guidance
    from sampler import _Guide

    dev = sampler.device
    levels, sigmas, index, t, x_t, noise, eta = _inputs(sampler, batch, args.sigma512, dev)
    t_orig = sampler.timestep_map[t]
    level_t = sampler._level_steps(sigmas)
    everyone = list(range(batch))
    guide = _Guide(sampler, levels, sigmas, level_t)
    lam = float(sampler.scfg.guidance.lam)
    with torch.no_grad():
        unet_out = sampler.model(x_t, t_orig)
        stub = _CachedOutput(unet_out)
        x0_hat = sampler.diffusion.model_x0(stub, x_t, t)[2]
        y_k, sigma_k = levels[0], sigmas[:, 0]  # the start level (the sharpest active one at t = 400 here)
        x0_tilde = guidance.closed_form_guidance(x0_hat, y_k, sigma_k, lam)
        first_level = _first_level_weights(batch, sigmas.shape[1], dev)
        level_1 = first_level.argmax(1)

        def ddim(model, guided, fresh=()):
            return common.guided_step(sampler, guide if guided else None, model, x_t, t, eta, noise, fresh)

        variants = {
            "UNet": lambda: sampler.model(x_t, t_orig),
            "guidance, closed_form_guidance per step": lambda: guidance.closed_form_guidance(
                x0_hat, y_k, sigma_k, lam, pad=guide.spectra.pad
            ),
            "guidance, LevelSpectra.solve per step": lambda: guide.spectra.solve(x0_hat, first_level, lam),
            "guidance, one level (LevelSpectra.solve_level per step, the sampler's)": lambda: guide.spectra.solve_level(
                x0_hat, level_1, lam
            ),
            "LevelSpectra build (once per batch)": lambda: guidance.LevelSpectra(
                guide.levels, sigmas, pad=guide.spectra.pad
            ),
            "x0 modifier, fresh DGSA map": lambda: common.guide_x0(guide, x0_hat, index, t_orig, everyone),
            "x0 modifier, reused DGSA map": lambda: common.guide_x0(guide, x0_hat, index, t_orig, []),
            "step w/o UNet, guided, fresh DGSA map": lambda: ddim(stub, True, everyone),
            "step w/o UNet, guided, reused DGSA map": lambda: ddim(stub, True),
            "step w/o UNet, unguided (DifFace)": lambda: ddim(stub, False),
        }
        if sampler.dgsa is not None:
            variants["DGSA"] = lambda: sampler.dgsa.guidance_scale(x0_hat, x0_tilde, y_k, t_orig)
            if sampler.dgsa.map_downsample > 1:
                full = _full_resolution_dgsa(sampler, args.resolution)
                variants["DGSA at full resolution (map_downsample 1)"] = lambda: full.guidance_scale(
                    x0_hat, x0_tilde, y_k, t_orig
                )
        if args.full_step:
            variants["full guided step (UNet + all), fresh DGSA map"] = lambda: ddim(sampler.model, True, everyone)
        times = common.interleaved(variants, args.repeats, warmup=args.warmup, device=dev)
        ops = {name: common.dispatched_ops(fn) for name, fn in variants.items()}
    med = {k: common.median(v) for k, v in times.items()}
    unet = med["UNet"]
    fresh, reused = med["step w/o UNet, guided, fresh DGSA map"], med["step w/o UNet, guided, reused DGSA map"]
    for every in sorted({1, 4, 8, 16, int(sampler.scfg.guidance.dgsa_every)}):
        med[f"mean step w/o UNet, dgsa_every = {every}"] = (fresh + (every - 1) * reused) / every
    rows = [
        [
            batch,
            name,
            1e3 * m,
            common.spread([1e3 * v for v in times[name]]) if name in times else "derived",
            f"{100 * m / unet:.2f} %",
            f"{1e3 * m / batch:.4g}",
            ops.get(name, "-"),
        ]
        for name, m in med.items()
    ]
    return rows, med


def _unet_variants(sampler, args):
    """UNet fp32 vs channels_last / bf16 autocast (CPU) or fp16 autocast (CUDA) / fp16 or bf16 trunk /
    torch.compile, same inputs."""
    from sampler import PRECISIONS

    dev = sampler.device
    levels, sigmas, index, t, x_t, noise, eta = _inputs(sampler, args.batches[0], args.sigma512, dev)
    t_orig = sampler.timestep_map[t]
    base = copy.deepcopy(sampler.model).to(memory_format=torch.contiguous_format)  # the config may say channels_last
    rows, variants = [], {"fp32 (baseline)": lambda: base(x_t, t_orig)}
    if "channels_last" in args.unet_variants:
        cl = copy.deepcopy(base).to(memory_format=torch.channels_last)
        x_cl = x_t.contiguous(memory_format=torch.channels_last)
        variants["channels_last"] = lambda: cl(x_cl, t_orig)
    if "autocast" in args.unet_variants:
        dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16

        def autocast():
            with torch.autocast(dev.type, dtype=dtype):
                return base(x_t, t_orig)

        variants[f"{str(dtype).split('.')[-1]} autocast"] = autocast
    for name in ("fp16", "bf16"):  # the sampler's half precision: the trunk's convolutions cast (UNetModel.convert_to)
        if name in args.unet_variants:
            half = copy.deepcopy(base)
            half.convert_to(PRECISIONS[name])
            variants[f"{name} trunk (precision {name})"] = lambda half=half: half(x_t, t_orig)
    compile_s = None
    if "compile" in args.unet_variants:
        compiled = torch.compile(copy.deepcopy(base))
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(x_t, t_orig)
        compile_s = time.perf_counter() - t0
        variants["torch.compile"] = lambda: compiled(x_t, t_orig)
    with torch.no_grad():
        ref = base(x_t, t_orig).float()
        errors = {name: float((fn().float() - ref).abs().max()) for name, fn in variants.items()}
        times = common.interleaved(variants, args.repeats, warmup=args.warmup, device=dev)
    base_s = common.median(times["fp32 (baseline)"])
    for name, ts in times.items():
        m = common.median(ts)
        rows.append(
            [
                args.batches[0],
                name,
                1e3 * m,
                common.spread([1e3 * v for v in ts]),
                f"{base_s / m:.3f}x",
                f"{errors[name]:.2e}",
            ]
        )
    if compile_s is not None:
        rows.append([args.batches[0], "torch.compile: first call (compile)", 1e3 * compile_s, "-", "-", "-"])
    return rows


def _guidance_variants(sampler, args, batch):
    """closed_form_guidance (default pad, the sampler's pad) and LevelSpectra (the sampler's pad) with per-image
    sigmas; error against a float64 solve with the same pad."""
    from models import guidance

    dev = sampler.device
    levels, sigmas, index, t, x_t, noise, eta = _inputs(sampler, batch, args.sigma512, dev)
    spread_sig = sigmas * torch.linspace(0.5, 1.5, batch, device=dev)[:, None]  # different sigmas per image
    stacked = torch.stack(levels, dim=1)
    y, x0_hat = levels[0], (x_t / 2).clamp(-1, 1)
    lam = float(sampler.scfg.guidance.lam)
    pad = guidance.batch_pad(spread_sig, sampler.resolution, float(sampler.scfg.guidance.pad_sigma_512))
    first_level = _first_level_weights(batch, sigmas.shape[1], dev)
    spectra = guidance.LevelSpectra(stacked, spread_sig, pad=pad)
    variants = {
        "closed_form_guidance (pad of the step's sigma)": lambda: guidance.closed_form_guidance(
            x0_hat, y, spread_sig[:, 0], lam
        ),
        f"closed_form_guidance (pad {pad})": lambda: guidance.closed_form_guidance(
            x0_hat, y, spread_sig[:, 0], lam, pad=pad
        ),
        f"LevelSpectra.solve per step (pad {pad})": lambda: spectra.solve(x0_hat, first_level, lam),
        f"LevelSpectra.solve_level per step (pad {pad}), the sampler's": lambda: spectra.solve_level(
            x0_hat, first_level.argmax(1), lam
        ),
        "LevelSpectra build, once per batch": lambda: guidance.LevelSpectra(stacked, spread_sig, pad=pad),
    }
    with torch.no_grad():
        ref_default = guidance.closed_form_guidance(x0_hat.double(), y.double(), spread_sig[:, 0], lam)
        ref_pad = guidance.closed_form_guidance(x0_hat.double(), y.double(), spread_sig[:, 0], lam, pad=pad)
        names = list(variants)
        refs = {names[0]: ref_default, names[1]: ref_pad, names[2]: ref_pad, names[3]: ref_pad}
        errors = {name: float((variants[name]().double() - ref).abs().max()) for name, ref in refs.items()}
        times = common.interleaved(variants, args.guidance_repeats, warmup=1, device=dev)
    base_s = common.median(times[names[0]])
    return [
        [
            batch,
            name,
            1e3 * common.median(ts),
            common.spread([1e3 * v for v in ts]),
            f"{base_s / common.median(ts):.3f}x",
            f"{errors[name]:.1e}" if name in errors else "-",
        ]
        for name, ts in times.items()
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--respacing", default="ddim250")
    parser.add_argument("--sigma512", type=float, default=8.0, help="blur of level 1 in 512-px units")
    parser.add_argument("--full-step", action="store_true")
    parser.add_argument(
        "--unet-variants",
        nargs="*",
        default=["channels_last", "autocast"],
        choices=["channels_last", "autocast", "fp16", "bf16", "compile"],
    )
    parser.add_argument("--guidance-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--guidance-repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from sampler import FaceRestoreSampler, load_sample_config

    with common.workdir(args) as wd:
        cfg_path = common.make_setup(
            Path(wd), args.resolution, common.default_faces(common.NUM_DSST_FACES), args.respacing
        )
        sampler = FaceRestoreSampler(load_sample_config(cfg_path), device=args.device, precision=args.precision)
        step_rows, key = [], None
        for b in args.batches:
            rows, med = _step_components(sampler, b, args)
            step_rows += rows
            key = key or med
        unet_rows = _unet_variants(sampler, args) if args.unet_variants else []
        guid_rows = [r for b in args.guidance_batches for r in _guidance_variants(sampler, args, b)]
    every = int(sampler.scfg.guidance.dgsa_every)
    overhead = key[f"mean step w/o UNet, dgsa_every = {every}"] / key["UNet"]
    tables = [
        "Step components (median of repeats, round-robin):\n\n"
        + common.markdown_table(
            ["batch", "component", "median ms", "min-max ms", "% of UNet", "ms / image", "ATen ops"], step_rows
        )
    ]
    if unet_rows:
        tables.append(
            "UNet variants (same input; error = max |out - fp32 out|):\n\n"
            + common.markdown_table(
                ["batch", "variant", "median ms", "min-max ms", "speed-up", "max abs error"], unet_rows
            )
        )
    tables.append(
        "Closed-form guidance (per-image sigmas 0.5-1.5 x level 1; error vs float64):\n\n"
        + common.markdown_table(["batch", "variant", "median ms", "min-max ms", "speed-up", "max abs error"], guid_rows)
    )
    verdict = "holds" if overhead < 0.15 else "does NOT hold"
    notes = [
        f"resolution {args.resolution}, respacing {args.respacing}, step index "
        f"{common.difface_start(args.respacing)} (t = 400), level-1 sigma_512 {args.sigma512}, "
        f"{args.repeats} repeats, {args.warmup} warm-up rounds, random weights, UNet precision "
        f"{sampler.precision}",
        f"claim 'guidance + DGSA + step overhead < 15 % of the UNet' at batch {args.batches[0]} with the "
        f"config's dgsa_every = {every} (mean over its steps): {100 * overhead:.2f} % -> {verdict}",
    ]
    notes += list(args.note)
    command = ["benchmarks.bench_step_breakdown", *(sys.argv[1:] if argv is None else argv)]
    common.report(
        f"Step breakdown, {args.resolution} px",
        command,
        tables,
        notes,
        device=args.device,
        write=args.write,
        path=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
