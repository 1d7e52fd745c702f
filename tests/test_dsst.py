"""DSST table (models/dsst.py, its builder models/dsst_build.py, scripts/make_dsst.py, models/make_DSST.ipynb)
on real faces, against independent references."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import correlate1d

from models.dsst import DSSTTable, DSSTTableError
from models.dsst_build import build_table, file_list_hash, kl_per_pixel, start_steps_from_residual, tau_for_start
from script_modules import load_script
from utils.image_io import read_image

main = load_script("make_dsst").main

REPO = Path(__file__).resolve().parents[1]
TAU = 1e-3
GRID = np.linspace(0.0, 32.0, 17) * 64 / 512  # sigma_512 0, 2, ..., 32 at 64 px


def linear_alphas_cumprod(num_steps: int = 1000) -> np.ndarray:
    """Ho et al. linear betas written out independently of models/gaussian_diffusion.py."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, num_steps))


def reference_residual(paths, sigma: float) -> float:
    """mean ||x - G x||^2 / N at 64 px: 2x2 box downsampling of 128 px faces, scipy 'mirror' boundary."""
    r = math.ceil(4 * sigma - 1e-9)
    k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    k /= k.sum()
    total = 0.0
    for p in paths:
        img = read_image(p).astype(np.float64)
        x = img.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3)) * 2 - 1
        g = correlate1d(correlate1d(x, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")
        total += np.mean((x - g) ** 2)
    return total / len(paths)


@pytest.fixture(scope="module")
def table(celeba_faces) -> DSSTTable:
    return build_table(
        celeba_faces[:16], GRID, resolution=64, noise_schedule="linear", num_steps=1000, tau=TAU, batch_size=8
    )


def test_table_metadata(table, celeba_faces):
    assert table.num_images == 16 and table.resolution == 64 and table.tau == TAU
    assert table.noise_schedule == "linear" and table.num_steps == 1000
    names = sorted(p.name for p in celeba_faces[:16])
    assert table.file_list_hash == hashlib.sha256("\n".join(names).encode()).hexdigest()


def test_residuals_match_independent_reference(table, celeba_faces):
    for j in (2, 5, 10, 16):
        want = reference_residual(celeba_faces[:16], float(GRID[j]))
        assert table.residuals[j] == pytest.approx(want, rel=1e-4)


def test_table_is_monotone_and_each_t_is_the_first_step_under_tau(table):
    t = np.asarray(table.t_values)
    assert (np.diff(t) >= 0).all()
    assert t[0] == 0 and t[-1] > 300  # no blur needs no noise; heavy blur needs a lot
    abar = linear_alphas_cumprod()
    for r, tj in zip(table.residuals, t):
        kl = abar * r / (2 * (1 - abar))
        assert kl[tj] < TAU
        if tj > 0:
            assert kl[tj - 1] >= TAU


def test_kl_per_pixel_matches_gaussian_kl():
    """a ||x - Gx||^2 / (2 (1 - a) N) equals the mean per-pixel KL of the two forward marginals."""
    gen = torch.Generator().manual_seed(0)
    x, gx = (
        torch.rand(3, 8, 8, generator=gen, dtype=torch.float64),
        torch.rand(3, 8, 8, generator=gen, dtype=torch.float64),
    )
    abar = np.array([0.9, 0.5, 0.01])
    residual = float(((x - gx) ** 2).mean())
    for a, got in zip(abar, kl_per_pixel(residual, abar)):
        std = math.sqrt(1 - a)
        p = torch.distributions.Normal(math.sqrt(a) * gx, std)
        q = torch.distributions.Normal(math.sqrt(a) * x, std)
        assert got == pytest.approx(torch.distributions.kl_divergence(p, q).mean().item(), rel=1e-10)


@settings(max_examples=20, deadline=None)
@given(residual=st.floats(0.0, 0.1), tau=st.floats(1e-5, 1e-2))
def test_start_steps_brute_force(residual, tau):
    abar = linear_alphas_cumprod()
    want = next((t for t in range(1000) if abar[t] * residual / (2 * (1 - abar[t])) < tau), 999)
    assert start_steps_from_residual(residual, abar, tau) == want


def test_save_load_roundtrip(table, tmp_path):
    path = table.save(tmp_path / "sub" / "dsst.json")
    assert DSSTTable.load(path) == table
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d.pop("tau"), "tau"),
        (lambda d: d.pop("file_list_hash"), "file_list_hash"),
        (lambda d: d.update(t_values=d["t_values"][::-1]), "t_values"),
        (lambda d: d.update(sigmas=d["sigmas"][:-1]), "t_values"),
        (lambda d: d.update(resolution="64"), "resolution"),
        (lambda d: d.update(sigmas=[0.0] * len(d["sigmas"])), "sigmas"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_load_rejects_bad_fields_with_clear_errors(table, tmp_path, edit, field):
    data = json.loads(json.dumps(table.__dict__))
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DSSTTableError, match=field) as info:
        DSSTTable.load(path)
    assert "bad.json" in str(info.value)


def test_load_rejects_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"sigmas": [0.0, ')
    with pytest.raises(DSSTTableError, match="corrupt.json"):
        DSSTTable.load(corrupt)
    with pytest.raises(DSSTTableError, match="missing.json"):
        DSSTTable.load(tmp_path / "missing.json")


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.0, 6.0), b=st.floats(0.0, 6.0))
def test_start_step_monotone_and_conservative(table, a, b):
    lo, hi = sorted((a, b))
    assert table.start_step(lo) <= table.start_step(hi)
    # conservative: at least the t of every grid sigma <= query
    below = [t for s, t in zip(table.sigmas, table.t_values) if s <= hi]
    assert table.start_step(hi) >= max(below)
    # tensor path agrees with the numpy path
    got = table.start_step(torch.tensor([lo, hi]))
    assert got.dtype == torch.int64 and got.tolist() == [table.start_step(lo), table.start_step(hi)]


def test_start_step_grid_points_clamping_and_resolution(table):
    np.testing.assert_array_equal(table.start_step(np.asarray(table.sigmas)), table.t_values)
    assert table.start_step(100.0) == table.t_values[-1]
    mid = 0.5 * (table.sigmas[10] + table.sigmas[11])
    assert table.start_step(mid) == table.t_values[11]
    # the same blur given at 512 px (sigma_512 = 8 sigma_64)
    assert table.start_step(8 * mid, resolution=512) == table.start_step(mid)
    with pytest.raises(ValueError, match="sigma"):
        table.start_step(-1.0)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(0, 999), stride=st.integers(1, 50), offset=st.integers(0, 10))
def test_respaced_index_is_the_first_step_with_at_least_as_much_noise(t, stride, offset):
    timestep_map = np.arange(offset, 1000, stride)
    idx = DSSTTable.respaced_index(t, timestep_map)
    if t > timestep_map[-1]:
        assert idx == len(timestep_map) - 1
    else:
        assert timestep_map[idx] >= t and (idx == 0 or timestep_map[idx - 1] < t)
    assert DSSTTable.respaced_index(torch.tensor([t]), torch.from_numpy(timestep_map)).tolist() == [idx]


def test_file_list_hash_ignores_order(celeba_faces):
    paths = celeba_faces[:5]
    assert file_list_hash(paths) == file_list_hash(paths[::-1])
    assert file_list_hash(paths) != file_list_hash(paths[:4])


@settings(max_examples=30, deadline=None)
@given(residual=st.floats(1e-4, 0.1), start_t=st.integers(1, 998))
def test_tau_for_start_puts_the_reference_blur_at_that_step(residual, start_t):
    abar = linear_alphas_cumprod()
    tau = tau_for_start(residual, abar, start_t)
    assert next(t for t in range(1000) if abar[t] * residual / (2 * (1 - abar[t])) < tau) == start_t


def test_cli_calibrated_tau_starts_the_reference_blur_at_the_given_step(faces_hq_dir, tmp_path):
    config = tmp_path / "dsst.yaml"
    config.write_text(
        "resolution: 64\ncalibrate: {sigma_512: 16.0, start_t: 400}\nbatch_size: 8\n"
        "grid:\n  sigma_512_max: 32.0\n  num: 9\n"
    )  # 16 is a grid point
    out = tmp_path / "table.json"
    assert (
        main(
            [
                "--images",
                str(faces_hq_dir / "celeba128_train.txt"),
                "--config",
                str(config),
                "--out",
                str(out),
                "--max-images",
                "8",
            ]
        )
        == 0
    )
    table = DSSTTable.load(out)
    assert table.start_step(16.0 * 64 / 512) == 400
    paths = [faces_hq_dir / n for n in (faces_hq_dir / "celeba128_train.txt").read_text().split()[:8]]
    abar = linear_alphas_cumprod()
    r16 = reference_residual(paths, 2.0)  # sigma_512 = 16 at 64 px
    assert table.tau == pytest.approx(
        math.sqrt(abar[399] * abar[400] / ((1 - abar[399]) * (1 - abar[400]))) * r16 / 2, rel=1e-4
    )
    both = tmp_path / "both.yaml"
    both.write_text("tau: 1.0e-3\ncalibrate: {sigma_512: 16.0, start_t: 400}\n")
    assert (
        main(
            [
                "--images",
                str(faces_hq_dir / "celeba128_train.txt"),
                "--config",
                str(both),
                "--out",
                str(out),
                "--max-images",
                "2",
            ]
        )
        == 2
    )


def test_cli_builds_and_prints_table(faces_hq_dir, tmp_path, capsys):
    config = tmp_path / "dsst.yaml"
    config.write_text("resolution: 32\ntau: 1.0e-3\nbatch_size: 4\ngrid:\n  sigma_512_max: 32.0\n  num: 9\n")
    out = tmp_path / "table.json"
    rc = main(
        [
            "--images",
            str(faces_hq_dir / "celeba128_train.txt"),
            "--config",
            str(config),
            "--resolution",
            "64",
            "--out",
            str(out),
            "--max-images",
            "4",
        ]
    )
    assert rc == 0
    table = DSSTTable.load(out)
    assert table.resolution == 64 and table.num_images == 4 and len(table.sigmas) == 9
    names = (faces_hq_dir / "celeba128_train.txt").read_text().split()[:4]
    assert table.file_list_hash == hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()
    assert "sigma_512" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("tua: 1.0\n")
    assert main(["--images", str(faces_hq_dir / "celeba128_train.txt"), "--config", str(bad), "--out", str(out)]) == 2
    assert "tua" in capsys.readouterr().err


def test_notebook_executes_headless(faces_hq_dir, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "models" / "make_DSST.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert nb.cells.index(params) == 1 and nb.cells[0].cell_type == "markdown"
    out = tmp_path / "dsst_nb.json"
    params.source = "\n".join(
        [
            f"images = {str(faces_hq_dir / 'celeba128_train.txt')!r}",
            "config = 'configs/dsst/demo64.yaml'",
            "resolution = 64",
            "max_images = 8",
            f"out = {str(out)!r}",
            "device = 'cpu'",
        ]
    )
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO / "models")}}
    )
    client.execute()
    table = DSSTTable.load(out)
    assert table.num_images == 8 and table.resolution == 64
    assert out.with_suffix(".png").stat().st_size > 0
    assert any(
        o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


def test_notebook_defaults_write_outside_the_shipped_weights(faces_hq_dir, tmp_path, monkeypatch):
    """The notebook run as shipped (only fewer faces) writes its table, plot and face strip under
    experiments/ of the repository it runs in, never into weights/demo/ (the shipped table). It runs in a
    scratch copy of the repository layout (configs/ linked), so the test touches no real folder."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "models" / "make_DSST.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = params.source.splitlines()
    out_line = next(line for line in lines if line.startswith("out ="))
    params.source = "\n".join(
        [line for line in lines if not line.startswith(("images =", "max_images ="))]
        + [f"images = {str(faces_hq_dir / 'celeba128_train.txt')!r}", "max_images = 4"]
    )
    (tmp_path / "models").mkdir()  # the kernel starts here; the notebook takes its parent as the root
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path / "models")}}
    ).execute()
    written = sorted(
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts
    )
    default_out = out_line.split("=", 1)[1].split("#")[0].strip().strip("\"'")
    stem = Path(default_out).with_suffix("")
    assert written == sorted([default_out, f"{stem}.png", f"{stem}_faces.png"]), written
    assert not default_out.startswith("weights")


def test_cli_several_folders_half_split_and_provenance(celeba_faces, tmp_path, monkeypatch, capsys):
    # two folders of real faces; the table stores how it was built, with paths relative to the working dir
    folders = [tmp_path / "a", tmp_path / "b"]
    for i, folder in enumerate(folders):
        folder.mkdir()
        for p in celeba_faces[4 * i : 4 * i + 4]:
            (folder / p.name).symlink_to(p)
    config = tmp_path / "dsst.yaml"
    config.write_text(
        "resolution: 64\ncalibrate: {sigma_512: 16.0, start_t: 400}\nbatch_size: 4\n"
        "grid:\n  sigma_512_max: 32.0\n  num: 17\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--images", "a", "b", "--config", "dsst.yaml", "--out", "t.json", "--half-split"]) == 0
    table = DSSTTable.load(tmp_path / "t.json")
    assert table.num_images == 8
    files = sorted(tmp_path.glob("[ab]/*.png"))  # folder a, then folder b: the order of --images
    assert table.file_list_hash == file_list_hash(files, tmp_path)
    prov = table.provenance
    assert (
        prov["images"] == ["a", "b"]
        and prov["config"] == "dsst.yaml"
        and prov["command"].startswith("python scripts/make_dsst.py --images a b")
    )
    split = prov["half_split"]
    halves = [
        build_table(
            files[j::2],
            np.linspace(0, 4, 17),
            resolution=64,
            noise_schedule="linear",
            num_steps=1000,
            calibrate=(2.0, 400),
            batch_size=4,
        )
        for j in (0, 1)
    ]
    assert split["num_images"] == [4, 4] and split["tau"] == pytest.approx([h.tau for h in halves])
    diff = np.abs(np.subtract(halves[0].t_values, halves[1].t_values))
    assert split["max_abs_dt_between_halves"] == diff.max()
    assert "half split:" in capsys.readouterr().out
