"""inference.inputs / report / strip: listing, sharding, seeds, bad and odd files, the metrics table."""

from __future__ import annotations

import csv
import io
import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from inference.inputs import (
    InputSkip,
    fit_reference,
    image_seed,
    list_inputs,
    load_image,
    match_hq,
    prepare_aligned,
    shard,
)
from inference.report import metrics_csv, summarize, write_json, write_report
from inference.strip import GAP, MIN_TILE, make_strip, strip_tiles
from utils.image_io import list_images, read_image
from utils.metrics import METRIC_CONVENTIONS


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), world=st.integers(1, 9))
def test_shards_are_disjoint_covering_and_balanced(n, world):
    items = list(range(n))
    shares = [shard(items, r, world) for r in range(world)]
    assert sorted(x for s in shares for x in s) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), key=st.text(min_size=1, max_size=20))
def test_image_seed_depends_only_on_seed_and_name(seed, key):
    s = image_seed(seed, key)
    assert s == image_seed(seed, key) and 0 <= s < 2**63
    assert s != image_seed(seed + 1, key) and s != image_seed(seed, key, 1)


def test_listing_keys_duplicates_and_hq_matching(tmp_path):
    face = np.full((20, 20, 3), 128, np.uint8)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "hq").mkdir()
    for name in ("a.png", "a.jpg", "b.png", "sub/c.png"):
        cv2.imwrite(str(tmp_path / "in" / name), face)
    (tmp_path / "in" / "notes.txt").write_text("x")
    cv2.imwrite(str(tmp_path / "hq" / "b.png"), face)
    cv2.imwrite(str(tmp_path / "hq" / "c.png"), face)
    items, msgs = list_inputs(tmp_path / "in")
    assert [i.key for i in items] == ["a", "b"]  # a.jpg sorts first; a.png is the duplicate
    assert any("a.png: skipped: same name" in m for m in msgs) and any("notes.txt" in m for m in msgs)
    items, _ = list_inputs(tmp_path / "in", recursive=True)
    assert [i.key for i in items] == ["a", "b", "sub/c"]
    match_hq(items, tmp_path / "hq")
    assert [None if i.hq is None else i.hq.name for i in items] == [None, "b.png", "c.png"]
    single, _ = list_inputs(tmp_path / "in" / "b.png")
    match_hq(single, tmp_path / "hq" / "c.png")  # two single files pair whatever their names
    assert single[0].key == "b" and single[0].hq.name == "c.png"


def _face(real_lq_dir) -> np.ndarray:
    return cv2.imread(str(list_images(real_lq_dir / "aligned_misc")[0]))  # real 512 px face, BGR uint8


def test_odd_files_are_converted_with_notes_or_skipped(tmp_path, real_lq_dir):
    bgr = _face(real_lq_dir)
    gray16 = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "rgb16.png"), bgr.astype(np.uint16) * 257)
    Image.fromarray(bgr[:, :, ::-1]).convert("P").save(tmp_path / "pal.png")
    cv2.imwrite(str(tmp_path / "wide.png"), bgr[100:300])
    cv2.imwrite(str(tmp_path / "tiny.png"), bgr[:15, :40])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")

    loaded = load_image(tmp_path / "g16.png", 16, 4096)
    sixteen = "16-bit image: written at 16 bits, pixels outside the restored faces unchanged"
    assert loaded.notes == [sixteen, "grayscale image: restored in RGB, projected back to gray (1 channel)"]
    np.testing.assert_allclose(loaded.image[..., 0], gray16 / 65535.0, atol=1e-6)
    assert load_image(tmp_path / "rgba.png", 16, 4096).notes[0].startswith("alpha kept")
    assert load_image(tmp_path / "rgba.png", 16, 4096, "drop").notes == ["alpha channel dropped (--alpha drop)"]
    assert load_image(tmp_path / "rgb16.png", 16, 4096).notes == [sixteen]
    assert "palette image, expanded to RGB" in load_image(tmp_path / "pal.png", 16, 4096).notes
    assert load_image(tmp_path / "wide.png", 16, 4096).notes == []
    for name, reason in (
        ("tiny.png", "too small (40x15 px"),
        ("empty.png", "empty file"),
        ("text.jpg", "not a decodable image"),
    ):
        with pytest.raises(InputSkip, match=reason.replace("(", r"\(")):
            load_image(tmp_path / name, 16, 4096)

    wide = prepare_aligned(load_image(tmp_path / "wide.png", 16, 4096), 64)
    assert wide.image.shape == (64, 64, 3) and wide.notes == ["not square (512x200 px), centre-cropped to 200x200"]
    expected = cv2.resize(
        bgr[100:300, 156:356][:, :, ::-1].astype(np.float32) / 255, (64, 64), interpolation=cv2.INTER_AREA
    )
    np.testing.assert_allclose(wide.image, expected, atol=1e-5)


def test_very_large_images_are_downscaled_with_a_note(tmp_path, real_lq_dir):
    cv2.imwrite(str(tmp_path / "big.png"), _face(real_lq_dir))
    loaded = load_image(tmp_path / "big.png", 16, 200)
    assert loaded.image.shape == (200, 200, 3) and loaded.original_size == (512, 512)
    assert loaded.notes == ["very large (512x512 px), downscaled to 200x200 (--max_side 200)"]
    # upscaling (bicubic) stays in [0, 1]; a reference of another size is brought to the result's size
    up = prepare_aligned(loaded, 256).image
    assert up.shape == (256, 256, 3) and up.min() >= 0 and up.max() <= 1
    ref, note = fit_reference(read_image(tmp_path / "big.png"), (32, 32))
    assert ref.shape == (32, 32, 3) and "512x512 resized to 32x32" in note


def _records():
    return [
        {
            "key": "a",
            "file": "in/a.png",
            "method": "dynfacerestore",
            "sigma_hat": 1.5,
            "start_index": 3,
            "start_t": 120,
            "nfe": 4,
            "eta": 0.5,
            "seconds": 0.5,
            "metrics": {"psnr": 20.0, "ssim": 0.5, "lpips_alex": 0.3},
        },
        {
            "key": "b",
            "file": "in/b.png",
            "method": "dynfacerestore",
            "sigma_hat": 0.5,
            "start_index": 1,
            "start_t": 40,
            "nfe": 2,
            "eta": 0.2,
            "seconds": 0.25,
            "metrics": {"psnr": 30.0, "ssim": 0.7, "lpips_alex": 0.1},
        },
        {
            "key": "c",
            "file": "in/c.png",
            "method": "dynfacerestore",
            "sigma_hat": 0.1,
            "start_index": 0,
            "start_t": 0,
            "nfe": 1,
            "eta": 0.1,
            "seconds": 0.1,
            "metrics": None,
        },
        {
            "key": "d",
            "file": "in/d.png",
            "method": "difface",
            "sigma_hat": None,
            "start_index": 10,
            "start_t": 400,
            "nfe": 11,
            "eta": 0.5,
            "seconds": 1.0,
            "metrics": {"psnr": math.inf, "ssim": 1.0},
        },
    ]


def test_metrics_table_csv_and_summary(tmp_path, capsys):
    records = _records()
    rows = list(csv.reader(io.StringIO(metrics_csv(records))))
    assert rows[0][-3:] == [METRIC_CONVENTIONS[n] for n in ("psnr", "ssim", "lpips_alex")]
    assert [r[0] for r in rows[1:]] == ["a", "b", "c", "d"] and rows[3][-3:] == ["", "", ""]
    assert rows[4][-3:] == ["inf", "1.0", ""]
    summary = summarize(records)
    dyn = summary["dynfacerestore"]
    assert dyn["num_images"] == 3 and dyn["num_with_metrics"] == 2
    assert dyn["mean"]["psnr"] == pytest.approx(25.0) and dyn["mean"]["lpips_alex"] == pytest.approx(0.2)
    assert dyn["mean"]["nfe"] == pytest.approx(7 / 3) and dyn["mean"]["seconds"] == pytest.approx(0.85 / 3)
    assert math.isinf(summary["difface"]["mean"]["psnr"]) and summary["difface"]["mean"]["lpips_alex"] is None
    for r in records:
        write_json(tmp_path / "records" / f"{r['key']}.json", r)
    (tmp_path / "records" / "broken.json").write_text("{")
    table = write_report(tmp_path)
    assert "broken.json: record ignored" in capsys.readouterr().out
    assert "dynfacerestore" in table and "25.00" in table and "inf" in table
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["num_records"] == 4 and saved["conventions"]["psnr"] == METRIC_CONVENTIONS["psnr"]


def test_strip_layout():
    rng = np.random.default_rng(0)
    lq, res = rng.random((32, 32, 3)), rng.random((32, 32, 3))
    levels = [rng.random((32, 32, 3)) for _ in range(3)]
    tiles = strip_tiles(lq, res, levels=levels, sigmas=[1.5, 1.125, 0.84], guidance_map=rng.random((32, 32)))
    assert [t[0] for t in tiles] == ["LQ", "y'1 s=1.50", "y'2 s=1.12", "y'3 s=0.84", "guidance s", "result"]
    strip = make_strip(tiles)
    assert strip.dtype == np.uint8 and strip.shape[1] == 6 * MIN_TILE + 5 * GAP
    band = strip.shape[0] - MIN_TILE
    # the last tile is the result, enlarged by nearest neighbour; labels are drawn (dark pixels) in the band
    last = strip[band:, -MIN_TILE:].astype(np.float64) / 255
    np.testing.assert_allclose(last[::4, ::4], res, atol=0.5 / 255 + 1e-9)
    assert (strip[:band] < 128).any()
    assert [t[0] for t in strip_tiles(lq, res, source=lq)] == ["LQ", "RM0(y)", "result"]
