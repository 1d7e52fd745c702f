"""utils/image_file.py: what a file was travels from read to write, so an untouched image is written back as
the file's own pixels; the gray projection and the alpha composite against float64 closed forms."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.image_file import composite_on_mean, faithful_pixels, from_pixels, project_gray
from utils.image_io import read_upright, write_image

DTYPES = {"uint8": (np.uint8, 255), "uint16": (np.uint16, 65535)}


def _pixels(seed: int, dtype: str, channels: int, gray: bool) -> np.ndarray:
    kind, top = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    img = rng.integers(0, top + 1, size=(5, 7, max(channels, 1)), dtype=np.int64).astype(kind)
    if gray and channels >= 3:
        img[:, :, 1:3] = img[:, :, :1]
    return img[:, :, 0] if channels == 0 else img


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    dtype=st.sampled_from(sorted(DTYPES)),
    channels=st.sampled_from([0, 3, 4]),
    gray=st.booleans(),
    alpha=st.sampled_from(["keep", "drop"]),
)
def test_an_untouched_image_is_written_back_as_its_own_pixels(seed, dtype, channels, gray, alpha):
    pixels = _pixels(seed, dtype, channels, gray)
    rgb, facts = from_pixels(pixels, alpha=alpha)
    out = faithful_pixels(rgb, rgb, facts)
    want = pixels[:, :, :3] if channels == 4 and alpha == "drop" else pixels
    assert out.dtype == pixels.dtype
    np.testing.assert_array_equal(out, want)


def test_a_changed_pixel_is_projected_to_gray_and_keeps_its_alpha():
    pixels = _pixels(1, "uint16", 4, gray=True)
    rgb, facts = from_pixels(pixels)
    result = rgb.copy()
    result[2, 3] = [0.9, 0.1, 0.3]  # a restorer's colour on a gray photo
    out = faithful_pixels(result, rgb, facts)
    g = 0.299 * 0.9 + 0.587 * 0.1 + 0.114 * 0.3
    np.testing.assert_array_equal(out[2, 3], [round(g * 65535)] * 3 + [pixels[2, 3, 3]])
    mask = np.ones(out.shape[:2], bool)
    mask[2, 3] = False
    np.testing.assert_array_equal(out[mask], pixels[mask])


def test_gray_projection_and_composite_closed_forms(rng):
    img = rng.random((6, 4, 3)).astype(np.float32)
    g = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(project_gray(img), np.repeat(g[:, :, None], 3, 2), atol=1e-7)
    alpha = rng.random((6, 4)).astype(np.float32)
    alpha[0] = 0.0
    a = alpha[:, :, None].astype(np.float64)
    mean = (a * img).sum((0, 1)) / a.sum()
    np.testing.assert_allclose(composite_on_mean(img, alpha), a * img + (1 - a) * mean, atol=1e-6)
    np.testing.assert_allclose(composite_on_mean(img, np.zeros((6, 4), np.float32)), 0.5)


@pytest.mark.parametrize("dtype,channels", [("uint8", 0), ("uint16", 0), ("uint16", 3), ("uint8", 4), ("uint16", 4)])
def test_write_image_stores_the_pixel_type_and_channels(tmp_path, dtype, channels):
    pixels = _pixels(2, dtype, channels, gray=False)
    write_image(tmp_path / "a.png", pixels)
    back, orientation = read_upright(tmp_path / "a.png")
    assert orientation == 1 and back.dtype == pixels.dtype
    np.testing.assert_array_equal(back, pixels)
