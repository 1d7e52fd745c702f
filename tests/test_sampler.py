"""The sampler against an independent DDIM loop, its cost accounting and every ablation switch."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from sampler import FaceRestoreSampler, auto_eta, load_sample_config
from tiny_setup import RESOLUTION, make_tiny_setup
from utils.config import ConfigError
from utils.image_io import img2tensor, list_images, read_image


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"), celeba_faces[:8])


@pytest.fixture(scope="module")
def real_lq(real_lq_dir):
    """Four real degraded faces from ../shared/data/real_lq at the tiny resolution."""
    paths = list_images(real_lq_dir / "wider_like")[:4]
    imgs = [cv2.resize(read_image(p), (RESOLUTION, RESOLUTION), interpolation=cv2.INTER_AREA) for p in paths]
    return img2tensor(imgs)


def _linear_alpha_bar(num_steps: int) -> np.ndarray:
    """improved-diffusion's linear schedule, written out independently in float64."""
    scale = 1000.0 / num_steps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def test_difface_mode_matches_an_independent_ddim_loop(tiny_config, real_lq):
    sampler = FaceRestoreSampler.from_config(tiny_config, ["sampler.method=difface", "sampler.eta=0.5"])
    seeds = [11, 12]
    lq = real_lq[:2]
    out = sampler.restore(lq, seeds)

    alpha_bar = _linear_alpha_bar(1000)
    tmap = np.asarray(sampler.diffusion.timestep_map)
    start, eta = 10, 0.5
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    def noise():
        return torch.stack([torch.randn(3, RESOLUTION, RESOLUTION, generator=g) for g in gens]).double()

    with torch.no_grad():
        x0 = sampler.restorer.restore(lq).clamp(-1, 1).double()
        ab = alpha_bar[tmap[start]]
        x = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise()
        for i in range(start, -1, -1):
            ab = alpha_bar[tmap[i]]
            ab_prev = alpha_bar[tmap[i - 1]] if i > 0 else 1.0
            t_model = torch.full((2,), int(tmap[i]))
            eps = sampler.model(x.float(), t_model)[:, :3].double()
            pred = ((x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)).clamp(-1, 1)
            eps = (x - np.sqrt(ab) * pred) / np.sqrt(1 - ab)
            sig = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
            x = np.sqrt(ab_prev) * pred + np.sqrt(max(1 - ab_prev - sig**2, 0.0)) * eps + sig * noise()
            # float32 network vs float64 reference: keep the trajectories identical step by step
            x = x.float().double()
    assert torch.allclose(out.images.double(), x.clamp(-1, 1), atol=2e-4)
    assert out.nfe.tolist() == [start + 1, start + 1]


def restore_counting_rows(sampler, network, lq, seeds):
    """``sampler.restore`` and the batch size of every forward call of ``network`` during it."""
    rows = []
    handle = network.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    try:
        return sampler.restore(lq, seeds), rows
    finally:
        handle.remove()


def test_mixed_start_steps_cost_exactly_their_own_steps(tiny_config, real_lq):
    sampler = FaceRestoreSampler.from_config(tiny_config)
    out, rows = restore_counting_rows(sampler, sampler.model, real_lq, [0, 1, 2, 3])
    starts = out.start_index.tolist()
    assert len(set(starts)) > 1, f"the tiny SDE should give mixed start steps, got {starts}"
    assert sum(rows) == sum(s + 1 for s in starts)
    assert out.nfe.tolist() == [s + 1 for s in starts]


def test_start_follows_the_dsst_table_and_auto_eta(tiny_config, real_lq):
    sampler = FaceRestoreSampler.from_config(tiny_config)
    out = sampler.restore(real_lq, [0, 1, 2, 3])
    table, tmap = sampler.dsst, np.asarray(sampler.diffusion.timestep_map)
    for n in range(real_lq.shape[0]):
        t1 = int(table.start_step(float(out.sigmas[n, 0])))
        k = int(out.start_index[n])
        assert tmap[k] >= t1 and (k == 0 or tmap[k - 1] < t1)
    expected_eta = (out.sigma_hat * 512 / RESOLUTION / 10).clamp(0, 1)
    assert torch.allclose(out.eta, expected_eta)
    assert torch.allclose(auto_eta(torch.tensor([0.0, 0.5, 5.0]), 64, 10.0), torch.tensor([0.0, 0.4, 1.0]))


def test_result_does_not_depend_on_the_batch(tiny_config, real_lq):
    sampler = FaceRestoreSampler.from_config(tiny_config)
    together = sampler.restore(real_lq, [5, 6, 7, 8]).images
    alone = sampler.restore(real_lq[2:3], [7]).images
    assert torch.allclose(together[2:3], alone, atol=1e-5)


ABLATIONS = [
    ["sampler.method=rm0"],
    ["sampler.method=difface"],
    ["sampler.guidance.mode=none"],
    ["sampler.guidance.mode=none", "sampler.start=fixed"],
    ["sampler.guidance.mode=global"],
    ["sampler.guidance.mode=global", "sampler.num_levels=1"],
    ["sampler.guidance.mode=global", "sampler.guidance.combine=all"],
    ["sampler.guidance.mode=global", "sampler.eta=0"],
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(x.split(".")[-1] for x in o))
def test_every_ablation_runs_on_real_faces(tiny_config, real_lq, overrides):
    sampler = FaceRestoreSampler.from_config(tiny_config, overrides)
    out = sampler.restore(real_lq, [0, 1, 2, 3])
    assert out.images.shape == real_lq.shape
    assert torch.isfinite(out.images).all() and out.images.abs().max() <= 1.0
    if sampler.method == "rm0":
        assert out.nfe.sum() == 0
    if sampler.method == "dynfacerestore":
        assert (out.sigmas[:, 1:] <= out.sigmas[:, :-1]).all()
        if "sampler.guidance.mode=none" not in overrides:
            assert out.guidance_map.shape == (4, 1, RESOLUTION, RESOLUTION)


def test_global_guidance_pulls_toward_the_blurred_level(tiny_config, real_lq):
    """With s = 1 and a tiny lam, blurring the result by sigma_1 reproduces y'_1 better than without guidance."""
    from data.blur import gaussian_blur

    def data_error(overrides):
        out = FaceRestoreSampler.from_config(tiny_config, overrides).restore(real_lq, [0, 1, 2, 3])
        return (gaussian_blur(out.images, out.sigmas[:, 0]) - out.levels[0]).abs().mean().item()

    base = ["sampler.num_levels=1", "sampler.eta=0"]
    guided = data_error(base + ["sampler.guidance.mode=global", "sampler.guidance.lam=0.001"])
    unguided = data_error(base + ["sampler.guidance.mode=none"])
    assert guided < 0.5 * unguided


def test_bad_sampler_settings_are_config_errors(tiny_config):
    with pytest.raises(ConfigError, match="sampler.method"):
        load_sample_config(tiny_config, ["sampler.method=diffface"])
    with pytest.raises(ConfigError, match="eta"):
        load_sample_config(tiny_config, ["sampler.eta=2"])
    with pytest.raises(ConfigError, match="guidnce"):
        load_sample_config(tiny_config, ["sampler.guidnce.mode=off"])
    with pytest.raises(ConfigError, match="dgsa_every"):
        load_sample_config(tiny_config, ["sampler.guidance.dgsa_every=0"])
    with pytest.raises(ConfigError, match="pad_sigma_512"):
        load_sample_config(tiny_config, ["sampler.guidance.pad_sigma_512=-1"])


def test_half_precision_falls_back_to_float32_on_the_cpu_with_a_warning(tiny_config):
    with pytest.warns(UserWarning, match="precision bf16 ignored"):
        sampler = FaceRestoreSampler.from_config(tiny_config, precision="bf16")
    assert sampler.precision == "fp32" and sampler.model.dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        FaceRestoreSampler.from_config(tiny_config, precision="fp8")


@pytest.fixture(scope="module")
def dgsa_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny_dgsa"), celeba_faces[:8], with_dgsa=True)


@pytest.mark.parametrize("every", [1, 3])
def test_dgsa_runs_on_each_images_first_step_and_then_every_nth(dgsa_config, real_lq, every):
    sampler = FaceRestoreSampler.from_config(dgsa_config, [f"sampler.guidance.dgsa_every={every}"])
    out, rows = restore_counting_rows(sampler, sampler.dgsa, real_lq, [0, 1, 2, 3])
    nfe = out.nfe.tolist()
    assert len(set(nfe)) > 1, f"the tiny SDE should give mixed start steps, got {nfe}"
    # steps 0, every, 2 every, ... of each image's own nfe steps
    assert sum(rows) == sum(math.ceil(s / every) for s in nfe)


def test_dgsa_every_n_result_does_not_depend_on_the_batch(dgsa_config, real_lq):
    sampler = FaceRestoreSampler.from_config(dgsa_config, ["sampler.guidance.dgsa_every=2"])
    together = sampler.restore(real_lq, [5, 6, 7, 8])
    alone = sampler.restore(real_lq[1:2], [6])
    assert torch.allclose(together.images[1:2], alone.images, atol=1e-5)
    every_step = FaceRestoreSampler.from_config(dgsa_config).restore(real_lq, [5, 6, 7, 8])
    assert not torch.allclose(every_step.images, together.images, atol=1e-6), "reusing maps changed nothing"


def test_channels_last_gives_the_same_restoration(dgsa_config, real_lq):
    plain = FaceRestoreSampler.from_config(dgsa_config).restore(real_lq, [1, 2, 3, 4])
    nhwc = FaceRestoreSampler.from_config(dgsa_config, ["sampler.channels_last=true"])
    assert nhwc.model.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc.restore(real_lq, [1, 2, 3, 4]).images, plain.images, rtol=0, atol=1e-4)


def _guided_reference(sampler, lq, seeds, every, combine):
    """The DynFaceRestore loop of docs/method.md sections 6-9 written out per image in float64 (the networks in
    float32): DDIM from the image's own start, guidance toward the sharpest active level (or all active
    levels) by the one-off closed form, DGSA on the image's steps 0, every, 2 every, ... and its last map
    in between. Returns the images, each image's mean guidance map and the set of levels that were the
    sharpest active one at some step. The DBLM levels, start steps and etas are the sampler's (tested on
    their own above)."""
    from models.guidance import batch_pad, closed_form_guidance_multi

    out = sampler.restore(lq, seeds)
    alpha_bar = _linear_alpha_bar(1000)
    tmap = np.asarray(sampler.diffusion.timestep_map)
    lam = float(sampler.scfg.guidance.lam)
    pad = batch_pad(out.sigmas, RESOLUTION, float(sampler.scfg.guidance.pad_sigma_512))
    images, maps, sharpest_seen = [], [], set()
    for j, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)

        def noise(gen=gen):
            return torch.randn(1, 3, RESOLUTION, RESOLUTION, generator=gen).double()

        levels = [level[j : j + 1].double() for level in out.levels]
        sigmas = out.sigmas[j].tolist()
        start, eta = int(out.start_index[j]), float(out.eta[j])
        ab = alpha_bar[tmap[start]]
        x = np.sqrt(ab) * levels[0] + np.sqrt(1 - ab) * noise()
        scale, map_sum = None, torch.zeros(1, 1, RESOLUTION, RESOLUTION, dtype=torch.float64)
        for i in range(start, -1, -1):
            t = int(tmap[i])
            ab = alpha_bar[t]
            ab_prev = alpha_bar[tmap[i - 1]] if i > 0 else 1.0
            t_model = torch.tensor([t])
            eps = sampler.model(x.float(), t_model)[:, :3].double()
            pred = ((x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)).clamp(-1, 1)
            active = [k == 0 or t <= int(out.level_t[j, k]) for k in range(len(levels))]
            sharpest = max(k for k, on in enumerate(active) if on)
            sharpest_seen.add(sharpest)
            chosen = [k for k, on in enumerate(active) if on] if combine == "all" else [sharpest]
            tilde = closed_form_guidance_multi(
                pred, [levels[k] for k in chosen], [sigmas[k] for k in chosen], lam, pad=pad
            )
            if (start - i) % every == 0:
                scale = sampler.dgsa.guidance_scale(
                    pred.float(), tilde.float(), levels[sharpest].float(), t_model
                ).double()
            map_sum += scale
            pred = (pred + scale * (tilde - pred)).clamp(-1, 1)
            eps = (x - np.sqrt(ab) * pred) / np.sqrt(1 - ab)
            sig = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
            x = np.sqrt(ab_prev) * pred + np.sqrt(max(1 - ab_prev - sig**2, 0.0)) * eps + sig * noise()
            x = x.float().double()  # float32 network vs float64 reference: same trajectory step by step
        images.append(x.clamp(-1, 1))
        maps.append(map_sum / (start + 1))
    return out, torch.cat(images), torch.cat(maps), sharpest_seen


@pytest.mark.parametrize("every,combine", [(3, "sharpest"), (2, "all")])
def test_dynfacerestore_matches_an_independent_guided_loop(dgsa_config, real_lq, every, combine):
    sampler = FaceRestoreSampler.from_config(
        dgsa_config, [f"sampler.guidance.dgsa_every={every}", f"sampler.guidance.combine={combine}"]
    )
    out, images, maps, sharpest_seen = _guided_reference(sampler, real_lq, [3, 4, 5, 6], every, combine)
    assert len(set(out.nfe.tolist())) > 1, "the tiny SDE should give mixed start steps"
    assert max(sharpest_seen) > 0, "a sharper level should take over during sampling"
    torch.testing.assert_close(out.images.double(), images, rtol=0, atol=2e-4)
    torch.testing.assert_close(out.guidance_map.double(), maps, rtol=0, atol=1e-5)


def test_compiled_unet_gives_the_same_restoration(dgsa_config, real_lq):
    """``sampler.compile`` traces the UNet with torch.compile (here its "eager" backend: the graph capture
    without code generation, seconds on a CPU) for every batch size a mixed-start batch meets."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    plain = FaceRestoreSampler.from_config(dgsa_config).restore(real_lq, [1, 2, 3, 4])
    compiled = FaceRestoreSampler.from_config(
        dgsa_config, ["sampler.compile.enabled=true", "sampler.compile.backend=eager"]
    )
    out = compiled.restore(real_lq, [1, 2, 3, 4])
    assert len(set(out.nfe.tolist())) > 1, "mixed start steps: the UNet meets several batch sizes"
    assert counters["stats"]["unique_graphs"] >= 2, dict(counters["stats"])
    torch.testing.assert_close(out.images, plain.images, rtol=0, atol=1e-5)


def test_unknown_compile_backend_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="sampler.compile.backend"):
        load_sample_config(tiny_config, ["sampler.compile.enabled=true", "sampler.compile.backend=nonesuch"])
