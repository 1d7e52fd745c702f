"""The sampler's outputs against stored reference outputs (tests/sampler_reference.pt).

The reference holds, for every case of :data:`CASES` on the tiny setup (tests/tiny_setup.py, random weights at
fixed seeds, four real degraded faces with mixed start steps, auto eta): the restored images, start indices,
NFE, etas, mean guidance maps, and per step of the callback the per-image float64 sums of x_t, the prior's
x0, the guided x0, the guidance map and the new sample, and those of the kept x0 history
(``python tests/test_sampler_equivalence.py`` writes it). A change of the sampler that alters any number
fails here. Tensors are compared bitwise: the same float32 operations in the same order on the CPU give the
same bits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

import cv2
import pytest
import torch
from omegaconf import OmegaConf

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's modules

from sampler import FaceRestoreSampler, SamplerStep, load_sample_config  # noqa: E402
from tiny_setup import RESOLUTION, make_tiny_setup  # noqa: E402
from utils.image_io import img2tensor, list_images, read_image  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "sampler_reference.pt"
SEEDS = [3, 4, 5, 6]
ZERO_SHOT = {"kind": "zero_shot", "num_levels": 3, "rho": 0.75, "sigma_min_512": 0.5, "sigma_ratio": 1.2}

#: name -> (config overrides, zero-shot DBLM); every case keeps x0 predictions every 3 steps.
CASES = {
    "difface_ddim": (["sampler.method=difface"], False),
    "difface_dpmpp_2m": (["sampler.method=difface", "sampler.solver=dpmpp_2m"], False),
    "dgsa_ddim": (["sampler.guidance.dgsa_every=2"], False),
    "dgsa_dpmpp_2m_reguide": (["sampler.solver=dpmpp_2m", "sampler.guidance.reguide=true"], False),
    "global_all_dpmpp_2m": (
        [
            "sampler.guidance.mode=global",
            "sampler.guidance.combine=all",
            "sampler.guidance.global_scale=0.7",
            "sampler.solver=dpmpp_2m",
        ],
        False,
    ),
    "unguided_ddim": (["sampler.guidance.mode=none"], False),
    "zero_shot_ddim": (["sampler.guidance.mode=global"], True),
    "zero_shot_dpmpp_2m": (["sampler.guidance.mode=global", "sampler.solver=dpmpp_2m"], True),
}


def lq_faces(real_lq: Path) -> torch.Tensor:
    """Four real degraded faces at the tiny resolution."""
    paths = list_images(real_lq / "wider_like")[:4]
    return img2tensor(
        [cv2.resize(read_image(p), (RESOLUTION, RESOLUTION), interpolation=cv2.INTER_AREA) for p in paths]
    )


def run_case(config: Path, overrides: List[str], zero_shot: bool, lq: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The outputs of one case that the reference stores."""
    cfg = load_sample_config(config, overrides + ["sampler.x0_every=3"])
    if zero_shot:
        OmegaConf.update(cfg, "dblm", ZERO_SHOT, merge=False)
    steps = []

    def record(step: SamplerStep) -> None:
        parts = [step.x_t, step.x0_prior, step.x0, step.sample]
        if step.guidance_map is not None:
            parts.append(step.guidance_map)
        steps.append(torch.stack([p.double().flatten(1).sum(1) for p in parts], dim=1))

    torch.manual_seed(0)
    out = FaceRestoreSampler(cfg).restore(lq, SEEDS, callback=record)
    result = {
        "images": out.images,
        "start_index": out.start_index,
        "nfe": out.nfe,
        "eta": out.eta,
        "step_sums": torch.cat(steps),
        "x0_history": torch.cat([h["x0"].double().flatten(1).sum(1) for h in out.x0_history]),
        "history_images": torch.cat([h["images"] for h in out.x0_history]),
    }
    if out.guidance_map is not None:
        result["guidance_map"] = out.guidance_map
    return result


def record_all(out_dir: Path, celeba: List[Path], real_lq: Path) -> Dict[str, Dict[str, torch.Tensor]]:
    """Every case of :data:`CASES` on a tiny setup written under ``out_dir``."""
    config = make_tiny_setup(out_dir, celeba[:8], with_dgsa=True)
    lq = lq_faces(real_lq)
    return {name: run_case(config, overrides, zero_shot, lq) for name, (overrides, zero_shot) in CASES.items()}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, celeba_faces, real_lq_dir):
    return record_all(tmp_path_factory.mktemp("equivalence"), celeba_faces, real_lq_dir)


@pytest.mark.parametrize("case", list(CASES))
def test_sampler_reproduces_the_stored_outputs(outputs, case):
    reference = torch.load(REFERENCE, weights_only=True)[case]
    got = outputs[case]
    assert sorted(got) == sorted(reference)
    if not case.startswith("difface"):  # DifFace starts every image at the same index
        assert len(set(got["nfe"].tolist())) > 1, "the case should mix start steps"
    for key, expected in reference.items():
        assert torch.equal(got[key], expected), f"{case}: {key} differs from the stored reference"


def test_cases_differ_from_each_other(outputs):
    """Every switch of :data:`CASES` changes the restoration (else a case would test nothing new)."""
    images = [outputs[case]["images"] for case in CASES]
    for a in range(len(images)):
        for b in range(a + 1, len(images)):
            assert not torch.equal(images[a], images[b]), f"{list(CASES)[a]} == {list(CASES)[b]}"


if __name__ == "__main__":
    import tempfile

    from conftest import FACES_HQ, REAL_LQ  # tests/conftest.py (tests/ comes first on sys.path)

    torch.set_num_threads(1)
    names = (FACES_HQ / "celeba128_train.txt").read_text().split()
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(record_all(Path(tmp), [FACES_HQ / n for n in names], REAL_LQ), REFERENCE)
    print(f"wrote {REFERENCE}")
