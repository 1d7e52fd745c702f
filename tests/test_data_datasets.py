"""data/datasets.py: file lists, per-item reproducible randomness, item contents, sigma*."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from data.datasets import FaceDataset, load_face, read_file_list
from data.degradation import load_degradation_config
from data.sigma_star import sigma_star

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "degradation" / "difface_blind.yaml"


@pytest.fixture(scope="module")
def small_list(tmp_path_factory, celeba_faces):
    folder = tmp_path_factory.mktemp("lists")
    lst = folder / "faces.txt"
    lst.write_text("# three faces\n" + "\n".join(os.path.relpath(p, folder) for p in celeba_faces[:3]) + "\n\n")
    return lst


def test_read_file_list(faces_hq_dir, small_list, celeba_faces, tmp_path):
    val = read_file_list(faces_hq_dir / "celeba128_val.txt")
    assert len(val) == 100 and all(p.is_file() for p in val)
    assert [p.resolve() for p in read_file_list(small_list)] == [p.resolve() for p in celeba_faces[:3]]
    assert len(read_file_list(faces_hq_dir / "celebref512")) == 117  # folder: recursive
    bad = tmp_path / "bad.txt"
    bad.write_text("missing.png\n")
    with pytest.raises(FileNotFoundError, match="bad.txt, line 1"):
        read_file_list(bad)
    with pytest.raises(FileNotFoundError):
        read_file_list(tmp_path / "nope.txt")


def test_items_shapes_and_reproducibility(small_list):
    ds = FaceDataset(small_list, 32, degradation=CONFIG, seed=5, with_sigma_star=True)
    item = ds[1]
    assert set(item) == {"hq", "lq", "sigma_star", "path"}
    for key in ("hq", "lq"):
        assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
        assert item[key].min() >= -1 and item[key].max() <= 1
    assert item["sigma_star"].dtype == torch.float32 and item["sigma_star"].ndim == 0
    ref = sigma_star(item["hq"][None], item["lq"][None])[0]
    assert item["sigma_star"] == ref
    # order of access, a second instance (another worker / rank) and the seed decide everything
    again = FaceDataset(small_list, 32, degradation=CONFIG, seed=5)
    _ = again[2]
    assert torch.equal(again[1]["lq"], item["lq"]) and torch.equal(again[1]["hq"], item["hq"])
    assert not torch.equal(FaceDataset(small_list, 32, degradation=CONFIG, seed=6)[1]["lq"], item["lq"])
    again.set_epoch(1)
    assert not torch.equal(again[1]["lq"], item["lq"])


def test_flip_length_and_no_degradation(small_list, celeba_faces):
    ds = FaceDataset(small_list, 48, flip=True, length=9, seed=0)
    assert len(ds) == 9
    original = torch.from_numpy(load_face(celeba_faces[0], 48)).permute(2, 0, 1) * 2 - 1
    for i in (0, 3, 6):
        item = ds[i]
        assert set(item) == {"hq", "path"} and Path(item["path"]).name == celeba_faces[0].name
        flipped = torch.equal(item["hq"], original.flip(-1))
        assert flipped or torch.equal(item["hq"], original)
    with pytest.raises(IndexError):
        ds[9]
    with pytest.raises(ValueError, match="with_sigma_star"):
        FaceDataset(small_list, 32, with_sigma_star=True)
    cfg = load_degradation_config(CONFIG)
    repeated = FaceDataset(small_list, 32, degradation=cfg, length=6)
    assert repeated[0]["path"] == repeated[3]["path"] and not torch.equal(repeated[0]["lq"], repeated[3]["lq"])
