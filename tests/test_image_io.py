"""utils/image_io.py on real files: every format a face folder may hold, bad files, atomic writes."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from utils.image_io import (
    ImageReadError,
    img2tensor,
    list_images,
    read_image,
    tensor2img,
    write_bytes_atomic,
    write_image,
)


@pytest.fixture
def rgb8(rng):
    return rng.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)  # non-square


def check_rgb(img, shape):
    assert img.dtype == np.float32 and img.shape == shape + (3,)
    assert img.min() >= 0.0 and img.max() <= 1.0


def test_8bit_png_non_square(tmp_path, rgb8):
    Image.fromarray(rgb8).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    check_rgb(img, (12, 20))
    np.testing.assert_array_equal(img, rgb8.astype(np.float32) / 255)  # RGB order, exact


def test_16bit_png(tmp_path, rng):
    gray16 = rng.integers(0, 65536, size=(9, 7), dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")  # PIL writes a 16-bit grayscale PNG
    img = read_image(tmp_path / "g16.png")
    check_rgb(img, (9, 7))
    for c in range(3):
        np.testing.assert_allclose(img[:, :, c], gray16 / 65535.0, rtol=0, atol=1e-7)


def test_16bit_rgb_png(tmp_path, rng):
    import cv2  # PIL cannot write 16-bit RGB; OpenCV writes BGR

    rgb16 = rng.integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1].copy())
    np.testing.assert_allclose(read_image(tmp_path / "c16.png"), rgb16 / 65535.0, rtol=0, atol=1e-7)


def test_grayscale_replicated(tmp_path, rgb8):
    gray = rgb8[:, :, 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    check_rgb(img, (12, 20))
    assert np.array_equal(img[:, :, 0], gray / np.float32(255)) and np.array_equal(img[:, :, 0], img[:, :, 2])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_dropped(tmp_path, rgb8, mode):
    rgba = np.concatenate([rgb8, np.full(rgb8.shape[:2] + (1,), 50, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").convert(mode).save(tmp_path / "a.png")
    want = rgb8 if mode == "RGBA" else np.asarray(Image.fromarray(rgb8).convert("L"))[:, :, None].repeat(3, 2)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), want.astype(np.float32) / 255)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_png(tmp_path, rgb8, transparency):
    pal = Image.fromarray(rgb8).quantize(colors=16)
    if transparency:
        pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    want = np.asarray(pal.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), want)


def test_jpeg(tmp_path, rgb8):
    smooth = np.repeat(np.repeat(rgb8[:3, :5], 4, axis=0), 4, axis=1)  # 12x20 blocks of flat colour
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=100)
    img = read_image(tmp_path / "a.jpg")
    check_rgb(img, (12, 20))
    want = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB"), dtype=np.float32) / 255
    assert np.abs(img - want).max() <= 2 / 255  # two decoders agree up to IDCT rounding
    assert np.abs(img - smooth / 255).mean() < 0.05  # and the colours are the right ones (RGB, not BGR)


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not an image\n", "not a decodable image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a decodable image"),  # corrupt PNG
    ],
)
def test_bad_files_raise_image_read_error(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_truncated_png_and_missing_file(tmp_path, rgb8):
    Image.fromarray(rgb8).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match="missing.png: cannot read file"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("name", ["out.png", "sub/dir/out.png"])
def test_write_image_atomic_roundtrip(tmp_path, rgb8, name):
    path = write_image(tmp_path / name, rgb8.astype(np.float32) / 255)
    np.testing.assert_array_equal(read_image(path), rgb8.astype(np.float32) / 255)
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]  # no temp file left behind
    write_image(path, rgb8[::-1])  # overwrite, uint8 input
    np.testing.assert_array_equal(read_image(path), rgb8[::-1].astype(np.float32) / 255)


def test_write_image_unknown_extension(tmp_path, rgb8):
    with pytest.raises(ValueError, match=r"out\.xyz: cannot encode image as '\.xyz'"):
        write_image(tmp_path / "out.xyz", rgb8)
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_atomic_failure_leaves_nothing(tmp_path):
    write_bytes_atomic(tmp_path / "f.bin", b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(tmp_path / "f.bin", object())
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert (tmp_path / "f.bin").read_bytes() == b"old"


def test_list_images(tmp_path, rgb8):
    for name in ["b.png", "a.JPG", "c.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.JPG", "b.png", "d.png"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_img2tensor_tensor2img_roundtrip(n, h, w, seed):
    imgs = np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)
    x = img2tensor(list(imgs))
    assert x.shape == (n, 3, h, w) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 1], torch.from_numpy(imgs[..., 1]) * 2 - 1)  # NCHW, [-1, 1]
    np.testing.assert_allclose(tensor2img(x), imgs, atol=1e-6)
    np.testing.assert_allclose(tensor2img(img2tensor(imgs[0])[0]), imgs[0], atol=1e-6)  # CHW path
    assert tensor2img(torch.full((1, 3, 2, 2), 5.0)).max() == 1.0  # out of range clamped


def test_real_face(faces_hq_dir):
    path = sorted((faces_hq_dir / "celeba128").iterdir())[0]
    img = read_image(path)
    check_rgb(img, img.shape[:2])
    assert img.shape[:2] == (128, 128) and img.std() > 0.05
    want = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_array_equal(img, want)  # same pixels and channel order as an independent decoder


def test_atomic_write_gives_normal_permissions(tmp_path):
    import stat

    from utils.image_io import _UMASK, write_bytes_atomic

    path = write_bytes_atomic(tmp_path / "f.bin", b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_UMASK
