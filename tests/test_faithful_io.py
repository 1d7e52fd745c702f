"""Real files in, faithful files out: EXIF orientation, alpha, grayscale, 16 bits, and the Python API.

Inputs are real faces of ../shared/data (aligned, or pasted into real photos by data.face_composites)
written to tmp_path sideways (EXIF orientation), with a transparent background, in gray, at 16 bits; they
go through the real command line (``inference.runner.main``, ``python inference_difface.py``), the web
page's library (``inference.interactive``) and ``inference.api.restore``. References: Pillow's
``ImageOps.exif_transpose`` for orientation, the input file's own pixels for everything a restoration
leaves alone, float64 formulas for the alpha composite.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from data.face_composites import make_composite
from inference.api import restore
from inference.inputs import load_image
from inference.interactive import Restorer
from inference.runner import main
from proc_helpers import REPO_ROOT, run_checked
from tiny_setup import make_tiny_setup
from utils.image_io import EXIF_ORIENTATION_TAG, read_upright

DEMO_CONFIG = "configs/sample/dynfacerestore_demo.yaml"
PHOTO_SIZE = (360, 480)  # (height, width) as a viewer shows the photos
FACE_PX = 120.0


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"), celeba_faces[:8])


@pytest.fixture(scope="module")
def photo(faces_hq_dir):
    """A real face pasted upright into a real 480x360 photo, uint8 RGB, and the face's centre (x, y)."""
    face = sorted((faces_hq_dir / "celebref512").rglob("*.png"))[3]
    comp = make_composite([face], seed=5, size=PHOTO_SIZE, face_px=(FACE_PX, FACE_PX), max_angle=5.0)
    return np.round(comp.image * 255).astype(np.uint8), comp.faces[0].landmarks.mean(axis=0)


def _far_from_face(centre, shape) -> np.ndarray:
    """Pixels farther than one face side from the face's centre: outside any pasted face footprint."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(xx - centre[0], yy - centre[1]) > FACE_PX


def _save_with_orientation(rgb: np.ndarray, path: Path, orientation: int, **kwargs) -> None:
    """Store ``rgb`` (as a viewer should show it) turned so that EXIF ``orientation`` turns it back."""
    stored = {3: np.rot90(rgb, 2), 6: np.rot90(rgb, 1), 8: np.rot90(rgb, -1)}[orientation]
    im = Image.fromarray(np.ascontiguousarray(stored))
    exif = im.getexif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    im.save(path, exif=exif.tobytes(), **kwargs)


def _orientation_tag(path: Path):
    with Image.open(path) as im:
        return im.getexif().get(EXIF_ORIENTATION_TAG)


def _unchanged(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.concatenate([bgr[:, :, 2::-1], bgr[:, :, 3:]], axis=2) if bgr.ndim == 3 else bgr


# ---------------------------------------------------------------------------------------------- orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_reading_applies_every_exif_orientation_as_pillow_does(celeba_faces, tmp_path, orientation):
    rgb = np.asarray(Image.open(celeba_faces[0]).convert("RGB"))[:, 20:]  # real face, not square
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    im.save(tmp_path / "a.png", exif=exif.tobytes())
    pixels, applied = read_upright(tmp_path / "a.png")
    assert applied == orientation
    np.testing.assert_array_equal(pixels, np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "a.png"))))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_aligned_sideways_face_goes_into_the_model_upright(tiny_config, celeba_faces, tmp_path, orientation):
    rgb = np.asarray(Image.open(celeba_faces[1]).convert("RGB"))
    (tmp_path / "up").mkdir()
    (tmp_path / "side").mkdir()
    Image.fromarray(rgb).save(tmp_path / "up" / "face.png")
    _save_with_orientation(rgb, tmp_path / "side" / "face.png", orientation)
    for name in ("up", "side"):
        assert (
            main(
                [
                    "-i",
                    str(tmp_path / name),
                    "-o",
                    str(tmp_path / f"o_{name}"),
                    "--aligned",
                    "--config",
                    str(tiny_config),
                    "--seed",
                    "3",
                ]
            )
            == 0
        )
    side = tmp_path / "o_side" / "restored" / "face.png"
    np.testing.assert_array_equal(_unchanged(side), _unchanged(tmp_path / "o_up" / "restored" / "face.png"))
    assert _orientation_tag(side) is None


def test_sideways_jpeg_photo_comes_back_upright_from_the_command_line(tiny_config, photo, tmp_path):
    rgb, centre = photo
    (tmp_path / "in").mkdir()
    _save_with_orientation(rgb, tmp_path / "in" / "photo.jpg", 6, quality=95)
    assert Image.open(tmp_path / "in" / "photo.jpg").size == PHOTO_SIZE  # (width, height): stored sideways
    proc = run_checked(
        [
            sys.executable,
            "inference_difface.py",
            "-i",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(tiny_config),
            "--paste",
            "classic",
        ]
    )
    assert "photo.jpg: converted: EXIF orientation 6 applied" in proc.stdout
    out = tmp_path / "o" / "restored" / "photo.png"
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "in" / "photo.jpg")))
    written = _rgb(_unchanged(out))
    assert written.shape == PHOTO_SIZE + (3,) and _orientation_tag(out) is None
    far = _far_from_face(centre, PHOTO_SIZE)
    # away from the face the output is the decoded input (OpenCV's and Pillow's JPEG decoders may differ by 1)
    assert np.abs(written[far].astype(int) - upright[far]).max() <= 1
    assert not np.array_equal(written[~far], upright[~far])  # the face was found (upright) and restored


def test_web_page_library_restores_a_sideways_photo_upright(tiny_config, photo, tmp_path):
    rgb, _ = photo
    _save_with_orientation(rgb, tmp_path / "photo.jpg", 8, quality=95)
    report = Restorer().restore_file(tmp_path / "photo.jpg", config=str(tiny_config), aligned=False)
    assert len(report.faces) == 1 and report.output().shape == PHOTO_SIZE + (3,)
    written = report.write(tmp_path / "downloads")[0]
    assert _unchanged(written).shape == PHOTO_SIZE + (3,) and _orientation_tag(written) is None


# ---------------------------------------------------------------------------------------------- alpha
def _rgba_photo(photo) -> np.ndarray:
    """The photo with its sides transparent (colour black under them, as many editors store it) and a ramp."""
    rgb, centre = photo
    xx = np.arange(PHOTO_SIZE[1])[None, :].repeat(PHOTO_SIZE[0], 0)
    alpha = np.clip((FACE_PX * 1.4 - np.abs(xx - centre[0])) * 8, 0, 255).astype(np.uint8)
    return np.dstack([rgb * (alpha[:, :, None] > 0), alpha])


def test_alpha_is_carried_through_a_whole_photo(tiny_config, photo, tmp_path):
    rgba = _rgba_photo(photo)
    assert (rgba[..., 3] == 0).mean() > 0.2 and (rgba[..., 3] == 255).mean() > 0.3
    (tmp_path / "in").mkdir()
    Image.fromarray(rgba).save(tmp_path / "in" / "photo.png")
    a = rgba[..., 3:].astype(np.float64) / 255
    mean = (a * rgba[..., :3] / 255).sum(axis=(0, 1)) / a.sum()
    seen = load_image(tmp_path / "in" / "photo.png", 16, 4096).image  # what the detector and the restorer see
    np.testing.assert_allclose(seen, a * rgba[..., :3] / 255 + (1 - a) * mean, atol=1e-6)
    runs = {"keep": [], "drop": ["--alpha", "drop"], "up2": ["--upscale", "2"]}
    for run, extra in runs.items():
        assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / run), "--config", str(tiny_config), *extra]) == 0
    kept = _rgb(_unchanged(tmp_path / "keep" / "restored" / "photo.png"))
    assert kept.shape == PHOTO_SIZE + (4,)
    np.testing.assert_array_equal(kept[..., 3], rgba[..., 3])
    far = _far_from_face(photo[1], PHOTO_SIZE)
    np.testing.assert_array_equal(kept[far], rgba[far])  # the stored colour under the alpha comes back too
    dropped = _rgb(_unchanged(tmp_path / "drop" / "restored" / "photo.png"))
    assert dropped.shape == PHOTO_SIZE + (3,)
    np.testing.assert_array_equal(dropped[far], rgba[far][:, :3])
    up = _rgb(_unchanged(tmp_path / "up2" / "restored" / "photo.png"))
    assert up.shape == (PHOTO_SIZE[0] * 2, PHOTO_SIZE[1] * 2, 4)
    back = cv2.resize(up[..., 3], PHOTO_SIZE[::-1], interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(back - rgba[..., 3]).mean() < 1.0  # the alpha resized with the image


def test_alpha_of_an_aligned_face_is_kept_and_its_background_is_not_black(tiny_config, celeba_faces, tmp_path):
    rgb = np.asarray(Image.open(celeba_faces[2]).convert("RGB"))
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]] - (rgb.shape[0] - 1) / 2
    alpha = np.where(np.hypot(xx, yy) < rgb.shape[0] * 0.45, 255, 0).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(np.dstack([rgb * (alpha[:, :, None] > 0), alpha])).save(tmp_path / "in" / "face.png")
    for run, extra in {"keep": [], "drop": ["--alpha", "drop"]}.items():
        assert (
            main(
                [
                    "-i",
                    str(tmp_path / "in"),
                    "-o",
                    str(tmp_path / run),
                    "--aligned",
                    "--config",
                    str(tiny_config),
                    *extra,
                ]
            )
            == 0
        )
    kept = _rgb(_unchanged(tmp_path / "keep" / "restored" / "face.png"))
    assert kept.shape == rgb.shape[:2] + (4,)  # larger than the model: back at its own size
    np.testing.assert_array_equal(kept[..., 3], alpha)
    dropped = _rgb(_unchanged(tmp_path / "drop" / "restored" / "face.png"))
    assert dropped.shape == rgb.shape
    corners = alpha == 0  # fully transparent: the model saw the mean colour there, not black
    assert kept[..., :3][corners].mean() > dropped[corners].mean() + 20


# ---------------------------------------------------------------------------------------------- gray
def test_gray_portraits_come_back_gray(faces_hq_dir, tmp_path):
    portraits = sorted((faces_hq_dir / "celebref512").rglob("*.png"))[:5]
    (tmp_path / "in").mkdir()
    for k, path in enumerate(portraits):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        small = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(tmp_path / "in" / f"g{k}.png"), small if k < 4 else np.dstack([small] * 3))  # 1 and 3 channels
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--aligned", "--config", DEMO_CONFIG]) == 0
    for k in range(5):
        out = _unchanged(tmp_path / "o" / "restored" / f"g{k}.png")
        if k < 4:
            assert out.shape == (128, 128)  # 1 channel in, 1 channel out, at its own size
        else:
            assert out.shape == (128, 128, 3) and (out == out[:, :, :1]).all()  # equal channels in, equal out


def test_gray_whole_photo_comes_back_one_channel_with_gray_faces(tiny_config, photo, tmp_path):
    rgb, centre = photo
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "photo.png"), gray)
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--config", str(tiny_config)]) == 0
    out = _unchanged(tmp_path / "o" / "restored" / "photo.png")
    far = _far_from_face(centre, PHOTO_SIZE)
    assert out.shape == PHOTO_SIZE and np.array_equal(out[far], gray[far])
    face = _unchanged(tmp_path / "o" / "restored_faces" / "photo_00.png")
    assert (face == face[:, :, :1]).all()


# ---------------------------------------------------------------------------------------------- 16 bits
def test_16bit_photo_keeps_its_16_bits_outside_the_faces(tiny_config, faces_hq_dir, tmp_path):
    face = sorted((faces_hq_dir / "celebref512").rglob("*.png"))[3]
    comp = make_composite([face], seed=5, size=PHOTO_SIZE, face_px=(FACE_PX, FACE_PX), max_angle=5.0)
    rgb16 = np.round(comp.image * 65535).astype(np.uint16)  # resampled real photo: values between 8-bit steps
    assert (rgb16 % 257 != 0).mean() > 0.5
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "photo.png"), rgb16[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "in" / "gray.tif"), cv2.cvtColor(rgb16[:, :, ::-1], cv2.COLOR_BGR2GRAY))
    assert (
        main(
            ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--config", str(tiny_config), "--paste", "classic"]
        )
        == 0
    )
    out = _rgb(_unchanged(tmp_path / "o" / "restored" / "photo.png"))
    assert out.dtype == np.uint16 and out.shape == rgb16.shape
    far = _far_from_face(comp.faces[0].landmarks.mean(axis=0), PHOTO_SIZE)
    np.testing.assert_array_equal(out[far], rgb16[far])  # bit-identical away from the pasted face
    assert (out[~far] != rgb16[~far]).any(axis=1).mean() > 0.2  # the face was restored
    gray = _unchanged(tmp_path / "o" / "restored" / "gray.png")
    assert gray.dtype == np.uint16 and gray.shape == PHOTO_SIZE


# ---------------------------------------------------------------------------------------------- Python API
def test_api_equals_the_command_line_on_arrays_and_pil_images(tiny_config, photo, real_lq_dir, tmp_path):
    rgb, _ = photo
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "photo.png")
    Image.open(real_lq_dir / "wider_like" / "0143.png").convert("L").save(tmp_path / "in" / "face.png")
    for run, extra in {"whole": [], "aligned": ["--aligned"]}.items():
        assert (
            main(
                [
                    "-i",
                    str(tmp_path / "in"),
                    "-o",
                    str(tmp_path / run),
                    "--config",
                    str(tiny_config),
                    "--seed",
                    "4",
                    *extra,
                ]
            )
            == 0
        )
    whole = restore(
        np.asarray(Image.open(tmp_path / "in" / "photo.png")),
        key="photo",
        aligned=False,
        config=str(tiny_config),
        seed=4,
    )
    assert isinstance(whole, np.ndarray) and whole.dtype == np.uint8
    np.testing.assert_array_equal(whole, _rgb(_unchanged(tmp_path / "whole" / "restored" / "photo.png")))
    face = restore(Image.open(tmp_path / "in" / "face.png"), key="face", config=str(tiny_config), seed=4)
    assert isinstance(face, Image.Image) and face.mode == "L"
    np.testing.assert_array_equal(np.asarray(face), _unchanged(tmp_path / "aligned" / "restored" / "face.png"))
    with pytest.raises(TypeError, match="numpy array or a PIL image, got str"):
        restore(str(tmp_path / "in" / "face.png"))
    with pytest.raises(TypeError, match="restore_file takes a file path, got ndarray: use restore_image"):
        Restorer().restore_file(np.asarray(face))


def test_readme_python_api_snippet_runs_and_equals_the_command_line(real_lq_dir, tmp_path, monkeypatch):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    Image.open(real_lq_dir / "wider_like" / "0143.png").save(tmp_path / "face.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    assert (
        main(
            [
                "-i",
                str(tmp_path / "face.png"),
                "-o",
                str(tmp_path / "cli"),
                "--aligned",
                "--config",
                DEMO_CONFIG,
                "--seed",
                "0",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "face_restored.png")),
        _rgb(_unchanged(tmp_path / "cli" / "restored" / "face.png")),
    )
