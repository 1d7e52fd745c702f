"""The CUDA paths: the same results as on the CPU, half precision close to float32, no host
synchronisation inside a sampling step. Skipped (with the reason) where no CUDA GPU is present, i.e. in
CI; scripts/gpu_check.sh runs them on a GPU machine.

Tiny setup (tests/tiny_setup.py: real architectures, random weights, 32 px) on real faces.
"""

from __future__ import annotations

import pytest
import torch

from data.blur import gaussian_blur
from models.dsst_build import load_faces
from models.guidance import closed_form_guidance_multi
from sampler import FaceRestoreSampler, _Guide, guided_x0
from tiny_setup import RESOLUTION, make_tiny_setup

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none; scripts/gpu_check.sh runs these on one)"
)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny_cuda"), celeba_faces[:8], with_dgsa=True)


@pytest.fixture(scope="module")
def lq(celeba_val_faces):
    """Four real faces blurred at different sigmas (mixed DSST starts), (4, 3, 32, 32) in [-1, 1], CPU."""
    faces = load_faces(celeba_val_faces[:4], RESOLUTION)
    return gaussian_blur(faces, torch.tensor([0.6, 1.2, 2.0, 3.0])).clamp(-1, 1)


@pytest.fixture
def exact_float32(monkeypatch):
    """No TF32 in cuDNN convolutions and matmuls: the CUDA float32 result is then comparable to the CPU's."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


class _GuidedStep:
    """One DynFaceRestore DDIM step of every image from respaced index 10, inputs given (moved to the
    device): DBLM levels, guide and x_t are prepared on construction, :meth:`run` is the step itself."""

    def __init__(self, sampler: FaceRestoreSampler, lq: torch.Tensor, x_noise: torch.Tensor, step_noise: torch.Tensor):
        dev = self.device = sampler.device
        self.sampler, self.step_noise = sampler, step_noise.to(dev)
        self.levels = sampler.dblm(lq.to(dev))
        sig = self.levels.sigmas.float()
        self.guide = _Guide(sampler, [img.float() for img in self.levels.images], sig, sampler._level_steps(sig))
        self.n = lq.shape[0]
        self.index = 10
        self.t = torch.full((self.n,), self.index, dtype=torch.long, device=dev)
        self.eta = torch.full((self.n,), 0.5, device=dev)
        self.idx = torch.arange(self.n, device=dev)
        self.x_t = sampler.diffusion.q_sample(self.levels.images[0].float(), self.t, noise=x_noise.to(dev))

    def run(self, fresh: bool = True) -> dict:
        diffusion, guide = self.sampler.diffusion, self.guide
        x0_hat = diffusion.model_x0(self.sampler.model, self.x_t, self.t)[2]
        x0_tilde = guide.closed_form(x0_hat, self.idx, self.index)
        scale = guide.scale(
            x0_hat,
            x0_tilde,
            self.idx,
            self.index,
            self.sampler.timestep_map[self.t],
            list(range(self.n)) if fresh else [],
        )
        x0 = guided_x0(x0_hat, x0_tilde, scale)
        return {"pred_xstart": x0, "sample": diffusion.ddim_update(self.x_t, x0, self.t, self.eta, self.step_noise)}


def _noises(shape):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)


def test_guided_step_on_cuda_matches_cpu(tiny_config, lq, exact_float32):
    x_noise, step_noise = _noises(lq.shape)
    results = {}
    for device in ("cpu", "cuda"):
        sampler = FaceRestoreSampler.from_config(tiny_config, device=device)
        with torch.no_grad():
            step = _GuidedStep(sampler, lq, x_noise, step_noise)
            results[device] = step.levels, step.run()
    (lv_cpu, out_cpu), (lv_gpu, out_gpu) = results["cpu"], results["cuda"]
    torch.testing.assert_close(lv_gpu.sigmas.cpu(), lv_cpu.sigmas, rtol=1e-4, atol=1e-5)
    for a, b in zip(lv_gpu.images, lv_cpu.images):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-4)
    for key in ("pred_xstart", "sample"):
        torch.testing.assert_close(out_gpu[key].cpu(), out_cpu[key], rtol=0, atol=1e-4)


def test_closed_form_guidance_on_cuda_matches_float64(rng):
    """The batched closed form in float32 on the GPU against the same solve in float64 on the CPU."""
    n, k = 3, 2
    ys = [torch.from_numpy(rng.uniform(-1, 1, (n, 3, 40, 40))) for _ in range(k)]
    x0 = torch.from_numpy(rng.uniform(-1, 1, (n, 3, 40, 40)))
    sigmas = [torch.from_numpy(rng.uniform(0.5, 3.0, n)) for _ in range(k)]
    weights = [torch.from_numpy(rng.uniform(0, 1, n)) for _ in range(k)]
    ref = closed_form_guidance_multi(x0, ys, sigmas, 0.05, weights=weights)
    gpu = lambda tensors: [v.float().cuda() for v in tensors]  # noqa: E731
    got = closed_form_guidance_multi(x0.float().cuda(), gpu(ys), gpu(sigmas), 0.05, weights=gpu(weights))
    assert got.dtype == torch.float32 and got.is_cuda
    torch.testing.assert_close(got.double().cpu(), ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("precision, max_share", [("fp16", 0.05), ("bf16", 0.2)])
def test_half_precision_restore_is_close_to_float32(tiny_config, lq, precision, max_share):
    """Same seeds on the same device: the half-precision restore differs from the float32 one by a small
    fraction of what a different seed changes; starts and NFE are identical."""
    fp32 = FaceRestoreSampler.from_config(tiny_config, device="cuda")
    half = FaceRestoreSampler.from_config(tiny_config, device="cuda", precision=precision)
    assert half.precision == precision and half.model.dtype != torch.float32
    with torch.no_grad():
        ref = fp32.restore(lq, seeds=[1, 2, 3, 4])
        other_seeds = fp32.restore(lq, seeds=[5, 6, 7, 8])
        out = half.restore(lq, seeds=[1, 2, 3, 4])
    assert torch.equal(out.nfe, ref.nfe) and torch.equal(out.start_index, ref.start_index)
    assert len(set(ref.start_index.tolist())) > 1  # a mixed-start batch
    assert torch.isfinite(out.images).all() and out.images.dtype == torch.float32
    precision_diff = (out.images - ref.images).abs().mean().item()
    seed_diff = (other_seeds.images - ref.images).abs().mean().item()
    assert precision_diff < max_share * seed_diff, (precision_diff, seed_diff)


def _step_under_sync_check(sampler: FaceRestoreSampler, lq: torch.Tensor, fresh: bool):
    """A guided DDIM step (after a warm-up that fills the lazy caches) with torch.cuda's sync debug mode
    raising on any call that waits for the GPU."""
    x_noise, step_noise = _noises(lq.shape)
    with torch.no_grad():
        _GuidedStep(sampler, lq, x_noise, step_noise).run(fresh)  # warm-up
        step = _GuidedStep(sampler, lq, x_noise, step_noise)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step.run(fresh)
        finally:
            torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("fresh", [True, False])
def test_guided_step_has_no_host_synchronisation(tiny_config, lq, fresh):
    """A guided DDIM step - UNet, closed form, DGSA or the reused map, the DDIM update - makes no call that
    waits for the GPU."""
    out = _step_under_sync_check(FaceRestoreSampler.from_config(tiny_config, device="cuda"), lq, fresh)
    assert torch.isfinite(out["sample"]).all()


def test_sync_check_catches_a_per_step_schedule_copy(tiny_config, lq, monkeypatch):
    """Control: with the schedules copied from numpy at every use (as before GaussianDiffusion.on_device),
    the same check fails, so the test above can fail."""
    sampler = FaceRestoreSampler.from_config(tiny_config, device="cuda")
    monkeypatch.setattr(
        sampler.diffusion,
        "on_device",
        lambda name, device: torch.from_numpy(getattr(sampler.diffusion, name)).to(device),
    )
    with pytest.raises(RuntimeError, match="synchroniz"):
        _step_under_sync_check(sampler, lq, fresh=False)
