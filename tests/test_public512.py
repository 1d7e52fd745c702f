"""configs/sample/dynfacerestore_ffhq512_public.yaml end to end on the CPU: random weights saved at the real
DifFace layouts, the shipped DSST table, one real degraded 512 px face, respacing ddim4.

Its cost: building and saving the 160 M-parameter UNet and the SwinIR, loading them, one SwinIR pass, one
sigma* search and at most 4 UNet evaluations at 512 px.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from models.dsst import DSSTTable
from sampler import FaceRestoreSampler, load_sample_config
from utils.config import instantiate
from utils.image_io import img2tensor, read_image

CONFIG = "configs/sample/dynfacerestore_ffhq512_public.yaml"


@pytest.fixture(scope="module")
def weights(tmp_path_factory, checkpoint_specs_dir):
    """The config's two networks with their random initialisation, saved where overrides point the config."""
    folder = tmp_path_factory.mktemp("public512")
    cfg = load_sample_config(CONFIG)
    paths = {}
    torch.manual_seed(0)
    for section, spec in (("model", "difface_iddpm_ffhq512_unet"), ("restorer", "difface_swinir_restoration512")):
        state = instantiate(cfg[section]).state_dict()
        layout = json.loads((checkpoint_specs_dir / f"{spec}.json").read_text())
        assert {k: list(v.shape) for k, v in state.items()} == {k: v for k, v in layout.items() if k in state}
        paths[section] = folder / f"{section}.pth"
        torch.save(state, paths[section])
        del state
    return paths


def test_public_512_config_runs_end_to_end_reading_only_the_two_files(weights, real_lq_dir, monkeypatch):
    opened = []
    real_load = torch.load

    def recording_load(f, *args, **kwargs):
        opened.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    start = time.perf_counter()
    sampler = FaceRestoreSampler.from_config(
        CONFIG,
        overrides=[
            f"model.ckpt_path={weights['model']}",
            f"restorer.ckpt_path={weights['restorer']}",
            "diffusion.params.timestep_respacing=ddim4",
        ],
    )
    assert sorted(opened) == sorted(str(p) for p in weights.values())
    assert sampler.dgsa is None and isinstance(sampler.dsst, DSSTTable) and sampler.dsst.resolution == 512
    face = img2tensor([read_image(real_lq_dir / "wider_like" / "0143.png")])
    assert face.shape == (1, 3, 512, 512)
    out = sampler.restore(face, seeds=[0])
    seconds = time.perf_counter() - start
    assert sorted(opened) == sorted(str(p) for p in weights.values())  # nothing else loaded while sampling
    assert out.images.shape == face.shape and torch.isfinite(out.images).all()
    assert out.images.abs().max() <= 1.0
    assert 1 <= int(out.nfe[0]) <= 4 and out.sigma_hat is not None and float(out.sigma_hat[0]) >= 0
    assert len(out.levels) == 3 and torch.all(out.sigmas[0, 1:] <= out.sigmas[0, :-1])
    print(
        f"public 512 config end to end: {seconds:.1f} s, NFE {int(out.nfe[0])}, "
        f"sigma_hat {float(out.sigma_hat[0]):.2f} px"
    )


def test_missing_public_weights_point_at_the_download_script(real_lq_dir, tmp_path, capsys):
    from inference.runner import main

    rc = main(
        [
            "-i",
            str(real_lq_dir / "wider_like" / "0143.png"),
            "-o",
            str(tmp_path / "out"),
            "--aligned",
            "--config",
            CONFIG,
            "--opts",
            f"model.ckpt_path={tmp_path / 'absent.pth'}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1
    assert "absent.pth" in err and "python scripts/download_weights.py" in err
