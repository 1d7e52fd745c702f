"""One DynFaceRestore sampling step, broken into UNet, closed-form guidance, DGSA and the rest; UNet and
guidance optimisations measured against their baselines in the same run.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_step_breakdown --resolution 512 --batches 1 --repeats 3

Inputs (same for every component): real faces at the resolution, level 1 = G_sigma * face with
sigma_512 = ``--sigma512`` (levels 2, 3 at 0.75 and 0.5625 of it), x_t = q_sample(level 1, i) at the
respaced index i of DifFace's start (t = 400). Components, timed round-robin:

* ``UNet``: the prior's forward pass (the network evaluation a step costs);
* ``guidance (cache hit / miss)``: ``closed_form_guidance`` toward the sharpest level, with the 1-D
  kernel spectra cached (steady state) or the cache cleared before the call;
* ``DGSA``: ``dgsa.guidance_scale``;
* ``x0 modifier``: the sampler's whole per-step guidance (guidance + DGSA + blend + map bookkeeping);
* ``step w/o UNet (guided / unguided)``: ``ddim_sample`` with a stub model that returns the UNet's
  output computed once, i.e. everything a step costs besides the network; guided = DynFaceRestore,
  unguided = DifFace. ``rest`` = guided step w/o UNet - x0 modifier (p_mean_variance + DDIM math);
* ``full guided step`` (``--full-step``): the real ``ddim_sample`` with the UNet.

Optimisation rows (``--unet-variants``): channels_last, bf16 autocast (CPU) / fp16 (CUDA), torch.compile
(compile time reported separately); ``--guidance-variants``: the vectorised transfer function and a
per-batch cache of the level spectra conj(G) Y (sketched here as proposals for models/guidance.py).
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


def transfer_vectorised(sigmas: list, hp: int, wp: int, device, dtype) -> torch.Tensor:
    """Same result as ``data.blur.gaussian_transfer`` with no per-image loop or cache: every kernel of the
    batch is sampled at once (radius ceil(4 sigma), zero beyond it, normalised), wrapped onto hp and wp
    samples and transformed in one batched FFT (float64, then cast)."""
    s = torch.tensor(sigmas, dtype=torch.float64, device=device)
    radius = torch.where(s > 0, torch.ceil(4.0 * s - 1e-9).clamp(min=1), torch.zeros_like(s))
    r_max = int(radius.max().item())
    k = torch.arange(-r_max, r_max + 1, dtype=torch.float64, device=device)
    safe = torch.where(s > 0, s, torch.ones_like(s))[:, None]
    kernel = torch.exp(-(k * k) / (2.0 * safe * safe)) * (k.abs() <= radius[:, None])
    kernel = torch.where(s[:, None] > 0, kernel, (k == 0).to(kernel.dtype).expand_as(kernel))
    kernel = kernel / kernel.sum(1, keepdim=True)

    def spectrum(length: int) -> torch.Tensor:
        wrapped = torch.zeros(len(sigmas), length, dtype=torch.float64, device=device)
        return torch.fft.fft(wrapped.index_add_(1, k.long() % length, kernel)).real

    g_w = spectrum(wp)[:, : wp // 2 + 1]
    return (spectrum(hp)[:, :, None] * g_w[:, None, :])[:, None].to(dtype)


class LevelSpectrumCache:
    """Proposal: conj(G) Y and |G|^2 of the guiding level depend only on (level image, sigma, pad), not on
    the step, so a batch computes them once and every step does one forward and one inverse rfft2 (not
    two forward). Same equation as ``closed_form_guidance`` (DESIGN.md section 5), sharpest level."""

    def __init__(self, y: torch.Tensor, sigma: torch.Tensor, lam: float):
        from data.blur import gaussian_transfer, kernel_radius, mirror_indices

        n, _, self.h, self.w = y.shape
        self.pad = kernel_radius(max(sigma.tolist()))
        self.rows = mirror_indices(self.h, self.pad, y.device)
        self.cols = mirror_indices(self.w, self.pad, y.device)
        yp = self._padded(y)
        self.hp, self.wp = yp.shape[-2:]
        gain = gaussian_transfer(sigma.tolist(), self.hp, self.wp, y.device, torch.float32)
        self.lam = lam
        self.gy = gain * torch.fft.rfft2(yp)
        self.denom = gain * gain + lam

    def _padded(self, t):
        return t.float().index_select(2, self.rows).index_select(3, self.cols)

    def __call__(self, x0_hat: torch.Tensor) -> torch.Tensor:
        x = torch.fft.irfft2((self.gy + self.lam * torch.fft.rfft2(self._padded(x0_hat))) / self.denom,
                             s=(self.hp, self.wp))
        return x[..., self.pad:self.pad + self.h, self.pad:self.pad + self.w].to(x0_hat.dtype)


def _inputs(sampler, batch: int, sigma512: float, device):
    from data.blur import gaussian_blur
    from models.dsst import load_faces

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
    return levels, sigmas, t, x_t, noise, eta


def _step_components(sampler, batch, args):
    """Timings of one step's components at ``batch`` (module docstring); returns rows and the key numbers."""
    from data import blur
    from models import guidance
    from sampler import _Guide

    dev = sampler.device
    levels, sigmas, t, x_t, noise, eta = _inputs(sampler, batch, args.sigma512, dev)
    t_orig = sampler.timestep_map[t]
    level_t = sampler._level_steps(sigmas)
    idx = torch.arange(batch, device=dev)
    guide = _Guide(sampler, levels, sigmas, level_t)
    lam = float(sampler.scfg.guidance.lam)
    with torch.no_grad():
        unet_out = sampler.model(x_t, t_orig)
        stub = _CachedOutput(unet_out)
        x0_hat = sampler.diffusion.p_mean_variance(stub, x_t, t)["pred_xstart_prior"]
        y_k, sigma_k = levels[0], sigmas[:, 0]  # the start level (the sharpest active one at t = 400 here)
        x0_tilde = guidance.closed_form_guidance(x0_hat, y_k, sigma_k, lam)

        def ddim(model, modifier):
            return sampler.diffusion.ddim_sample(model, x_t, t, eta=eta, noise=noise, x0_modifier=modifier)

        def miss():
            blur.kernel_spectrum1d.cache_clear()
            return guidance.closed_form_guidance(x0_hat, y_k, sigma_k, lam)

        variants = {
            "UNet": lambda: sampler.model(x_t, t_orig),
            "guidance (spectrum cache hit)": lambda: guidance.closed_form_guidance(x0_hat, y_k, sigma_k, lam),
            "guidance (spectrum cache miss)": miss,
            "x0 modifier (guidance + DGSA + blend)": lambda: guide.modifier(idx)(x0_hat, x_t, t_orig),
            "step w/o UNet, guided (DynFaceRestore)": lambda: ddim(stub, guide.modifier(idx)),
            "step w/o UNet, unguided (DifFace)": lambda: ddim(stub, None),
        }
        if sampler.dgsa is not None:
            variants["DGSA"] = lambda: sampler.dgsa.guidance_scale(x0_hat, x0_tilde, y_k, t_orig)
        if args.full_step:
            variants["full guided step (UNet + all)"] = lambda: ddim(sampler.model, guide.modifier(idx))
        times = common.interleaved(variants, args.repeats, warmup=args.warmup, device=dev)
    med = {k: common.median(v) for k, v in times.items()}
    unet = med["UNet"]
    med["rest (p_mean_variance + DDIM)"] = med["step w/o UNet, guided (DynFaceRestore)"] - \
        med["x0 modifier (guidance + DGSA + blend)"]
    rows = [[batch, name, 1e3 * m, common.spread([1e3 * v for v in times[name]]) if name in times else "derived",
             f"{100 * m / unet:.2f} %", f"{1e3 * m / batch:.4g}"] for name, m in med.items()]
    return rows, med


def _unet_variants(sampler, args):
    """UNet fp32 vs channels_last / bf16 autocast (CPU) or fp16 autocast (CUDA) / torch.compile, same inputs."""
    dev = sampler.device
    levels, sigmas, t, x_t, noise, eta = _inputs(sampler, args.batches[0], args.sigma512, dev)
    t_orig = sampler.timestep_map[t]
    base = sampler.model
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
        rows.append([args.batches[0], name, 1e3 * m, common.spread([1e3 * v for v in ts]), f"{base_s / m:.3f}x",
                     f"{errors[name]:.2e}"])
    if compile_s is not None:
        rows.append([args.batches[0], "torch.compile: first call (compile)", 1e3 * compile_s, "-", "-", "-"])
    return rows


def _guidance_variants(sampler, args, batch):
    """Current closed form vs the vectorised transfer function vs the per-batch level-spectrum cache."""
    from data import blur
    from models import guidance

    dev = sampler.device
    levels, sigmas, t, x_t, noise, eta = _inputs(sampler, batch, args.sigma512, dev)
    # different sigmas per image, as in a real batch
    spread_sig = sigmas[:, 0] * torch.linspace(0.5, 1.5, batch, device=dev)
    y = levels[0]
    x0_hat = (x_t / 2).clamp(-1, 1)
    lam = float(sampler.scfg.guidance.lam)
    original = guidance.gaussian_transfer

    def vectorised():
        guidance.gaussian_transfer = transfer_vectorised
        try:
            return guidance.closed_form_guidance(x0_hat, y, spread_sig, lam)
        finally:
            guidance.gaussian_transfer = original

    def cached():
        return LevelSpectrumCache(y, spread_sig, lam)(x0_hat)

    cache = LevelSpectrumCache(y, spread_sig, lam)
    variants = {"current (cache hit)": lambda: guidance.closed_form_guidance(x0_hat, y, spread_sig, lam),
                "current (cache miss)": lambda: (blur.kernel_spectrum1d.cache_clear(),
                                                 guidance.closed_form_guidance(x0_hat, y, spread_sig, lam))[1],
                "vectorised transfer (no cache)": vectorised,
                "level spectrum cached per batch (per step)": lambda: cache(x0_hat),
                "level spectrum cache: build once": lambda: LevelSpectrumCache(y, spread_sig, lam)}
    with torch.no_grad():
        ref = guidance.closed_form_guidance(x0_hat.double(), y.double(), spread_sig, lam)
        errors = {"vectorised transfer (no cache)": vectorised(), "level spectrum cached per batch (per step)": cached()}
        errors = {k: float((v.double() - ref).abs().max()) for k, v in errors.items()}
        errors["current (cache hit)"] = errors["current (cache miss)"] = float(
            (guidance.closed_form_guidance(x0_hat, y, spread_sig, lam).double() - ref).abs().max())
        times = common.interleaved(variants, args.guidance_repeats, warmup=1, device=dev)
    base_s = common.median(times["current (cache hit)"])
    return [[batch, name, 1e3 * common.median(ts), common.spread([1e3 * v for v in ts]),
             f"{base_s / common.median(ts):.3f}x", f"{errors[name]:.1e}" if name in errors else "-"]
            for name, ts in times.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--respacing", default="ddim250")
    parser.add_argument("--sigma512", type=float, default=8.0, help="blur of level 1 in 512-px units")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--full-step", action="store_true")
    parser.add_argument("--unet-variants", nargs="*", default=["channels_last", "autocast"],
                        choices=["channels_last", "autocast", "compile"])
    parser.add_argument("--guidance-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--guidance-repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from sampler import FaceRestoreSampler, load_sample_config

    with common.workdir(args) as wd:
        cfg_path = common.make_setup(Path(wd), args.resolution, common.default_faces(common.NUM_DSST_FACES),
                                     args.respacing)
        sampler = FaceRestoreSampler(load_sample_config(cfg_path), device=args.device)
        step_rows, key = [], None
        for b in args.batches:
            rows, med = _step_components(sampler, b, args)
            step_rows += rows
            key = key or med
        unet_rows = _unet_variants(sampler, args) if args.unet_variants else []
        guid_rows = [r for b in args.guidance_batches for r in _guidance_variants(sampler, args, b)]
    overhead = key["step w/o UNet, guided (DynFaceRestore)"] / key["UNet"]
    tables = ["Step components (median of repeats, round-robin):\n\n" + common.markdown_table(
        ["batch", "component", "median ms", "min-max ms", "% of UNet", "ms / image"], step_rows)]
    if unet_rows:
        tables.append("UNet variants (same input; error = max |out - fp32 out|):\n\n" + common.markdown_table(
            ["batch", "variant", "median ms", "min-max ms", "speed-up", "max abs error"], unet_rows))
    tables.append("Closed-form guidance variants (per-image sigmas 0.5-1.5 x level 1; error vs float64):\n\n"
                  + common.markdown_table(["batch", "variant", "median ms", "min-max ms", "speed-up vs hit",
                                           "max abs error"], guid_rows))
    verdict = "holds" if overhead < 0.15 else "does NOT hold"
    notes = [f"resolution {args.resolution}, respacing {args.respacing}, step index "
             f"{common.difface_start(args.respacing)} (t = 400), level-1 sigma_512 {args.sigma512}, "
             f"{args.repeats} repeats, {args.warmup} warm-up rounds, random weights",
             f"claim 'guidance + DGSA + step overhead < 15 % of the UNet' at batch {args.batches[0]}: "
             f"{100 * overhead:.2f} % -> {verdict}"] + list(args.note)
    common.report(f"Step breakdown, {args.resolution} px", ["benchmarks.bench_step_breakdown", *(sys.argv[1:] if argv is None else argv)],
                  tables, notes, device=args.device, write=args.write, path=Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
