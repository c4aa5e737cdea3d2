"""Character images that are not plain 8-bit RGB: each is read the way its user means it, or refused clearly."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mfruntime.runtime.character import IMAGE_BACKGROUND, MAX_IMAGE_PIXELS, decode_image_bytes, prepare_image


def _png(img: Image.Image, path) -> str:
    img.save(path)
    return str(path)


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    """A 20000×20000 PNG is a few hundred KB on disk; decoding it would take 1.2 GB. Refused with its size."""
    bomb = Image.new("L", (20_000, 20_000))
    path = _png(bomb, tmp_path / "bomb.png")
    with pytest.raises(ValueError, match="too large|more than"):
        prepare_image(path, 64)
    with pytest.raises(ValueError, match="too large|more than"):
        decode_image_bytes(open(path, "rb").read(), "set_character: image")
    big = _png(Image.new("L", (9_000, 9_000)), tmp_path / "big.png")  # above our limit, below PIL's bomb check
    assert 9_000 * 9_000 > MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=f"more than {MAX_IMAGE_PIXELS} pixels"):
        prepare_image(big, 64)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = _png(Image.fromarray(ramp), tmp_path / "gray16.png")
    out = prepare_image(path, 64)
    assert out.shape == (64, 64, 3) and np.array_equal(out[..., 0], out[..., 2])
    assert out.min() == 0 and out.max() == 255 and 100 < out.mean() < 155  # a ramp, not a white character


def test_transparency_is_composited_on_the_stated_background(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:32, :, :3] = (200, 0, 0)
    rgba[:32, :, 3] = 255  # top half opaque red, bottom half fully transparent
    path = _png(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    out = prepare_image(path, 64)
    assert tuple(out[5, 30]) == (200, 0, 0) and tuple(out[60, 30]) == IMAGE_BACKGROUND
    assert tuple(prepare_image(Image.fromarray(rgba, "RGBA"), 64)[60, 30]) == IMAGE_BACKGROUND  # a PIL image too


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40] = 255  # left half white, landscape as stored
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the camera was held upright
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    path = tmp_path / "phone.jpg"
    path.write_bytes(buf.getvalue())
    out = decode_image_bytes(buf.getvalue())
    assert out.shape == (80, 40, 3)  # upright: portrait
    assert out[:40].mean() > 200 and out[40:].mean() < 50  # the white half is now on top
    assert prepare_image(str(path), 64).shape == (64, 64, 3)


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not an image file"):
        prepare_image(str(tmp_path), 64)
    with pytest.raises(ValueError, match="does not exist"):
        prepare_image(str(tmp_path / "missing.png"), 64)
