"""A character's conditioning: the reference image (identity) and the voice sample (speaker reference)."""
from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mfruntime.config import DEFAULT_RENDERER, MODEL_IMAGE_MAX_SIDE, RENDERERS
from mfruntime.data.media import square_resize
from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.data.speech import Voice, synthesize

#: Text spoken to make a voice's speaker reference; never the utterance itself, so no audio of it leaks in.
VOICE_SAMPLE_TEXT = "Hello there, this is how my voice sounds today."
MIN_IMAGE_SIDE = 16
MAX_IMAGE_PIXELS = 64_000_000
def choose_renderer(image: np.ndarray, renderer: str = DEFAULT_RENDERER) -> str:
    """``renderer`` ("auto", "model" or "portrait") for a loaded (H, W, 3) image → "model" or "portrait"."""
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {', '.join(RENDERERS)}, got {renderer!r}")
    if renderer != "auto":
        return renderer
    return "model" if max(image.shape[:2]) <= MODEL_IMAGE_MAX_SIDE else "portrait"


def default_character(size: int, seed: int = 0) -> np.ndarray:
    """The built-in character: a rendered face of identity ``seed`` with a closed mouth, (size, size, 3) uint8."""
    return FaceRenderer(Identity.from_seed(seed), size).render(FaceState())


def prepare_image(image, size: int) -> np.ndarray:
    """Any RGB image (:func:`load_image`) → (size, size, 3) uint8: centre-cropped to a square and resized."""
    return np.array(square_resize(load_image(image), size))  # a writable copy: the caller's image is never shared


def load_image(image) -> np.ndarray:
    """Any RGB image → (H, W, 3) uint8 at its own size.

    Accepts a (H, W, 3) uint8 array, a PIL image or a path to an image file (read by :func:`read_image`:
    EXIF orientation applied, transparency composited on :data:`IMAGE_BACKGROUND`, 16-bit and grayscale
    images scaled to 8-bit RGB). Anything else — grayscale or RGBA arrays, other dtypes, tiny images,
    unreadable files — is a ValueError that says what was wrong.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_dir():
            raise ValueError(f"character image {path} is a folder, not an image file: give the path of the image in it")
        if not path.is_file():
            raise ValueError(f"character image {path} does not exist")
        try:
            with Image.open(path) as im:
                image = read_image(im, f"character image {path}")
        except Image.DecompressionBombError as exc:
            raise ValueError(f"character image {path} is too large to decode safely ({exc}); "
                             f"give one of at most {MAX_IMAGE_PIXELS} pixels") from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"character image {path} could not be read as an image ({exc})") from exc
    if isinstance(image, Image.Image):
        image = read_image(image, "character image")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"character image must be an RGB array (H, W, 3) uint8, a PIL image or a file path, "
                         f"got {type(image).__name__}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"character image must be RGB with shape (H, W, 3), got {image.shape}"
                         + (" (RGBA: drop the alpha channel)" if image.ndim == 3 and image.shape[-1] == 4 else "")
                         + (" (grayscale: stack it to 3 channels)" if image.ndim == 2 else ""))
    if image.dtype != np.uint8:
        raise ValueError(f"character image must be uint8 (0–255), got {image.dtype}: convert with (img * 255).astype(np.uint8) "
                         "if it is float in [0, 1]")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise ValueError(f"character image is {image.shape[1]}×{image.shape[0]}, smaller than {MIN_IMAGE_SIDE} px on a side")
    return image


def decode_image_bytes(data: bytes, what: str = "image") -> np.ndarray:
    """An encoded image file's bytes (PNG, JPEG, …) → (H, W, 3) uint8 by :func:`read_image`; ValueError if not."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return read_image(im, what)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{what} is too large to decode safely ({exc}); give one of at most {MAX_IMAGE_PIXELS} pixels") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{what}: the {len(data)} image bytes (starting {data[:8].hex(' ')}) are not a readable "
                         "PNG/JPEG/BMP/… file") from exc


def decode_raw_rgb(data: bytes, width, height, what: str = "image") -> np.ndarray:
    """Raw RGB bytes of a ``width`` × ``height`` image → (height, width, 3) uint8, with the same size limits as
    image files (:data:`MIN_IMAGE_SIDE`, :data:`MAX_IMAGE_PIXELS`); ValueError if the numbers do not fit."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < MIN_IMAGE_SIDE:
            raise ValueError(f"{what}: {name} must be a whole number of pixels, at least {MIN_IMAGE_SIDE}, got {value!r}")
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} is {width}×{height}, more than {MAX_IMAGE_PIXELS} pixels: give a smaller image")
    if len(data) != width * height * 3:
        raise ValueError(f"{what}: {len(data)} bytes is not {width}×{height}×3 RGB")
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)


#: Transparent pixels of a character image are composited on this colour (RGB).
IMAGE_BACKGROUND = (255, 255, 255)


def read_image(im: Image.Image, what: str) -> np.ndarray:
    """A PIL image → (H, W, 3) uint8 RGB, the way a user means it: its size checked before decoding, its EXIF
    orientation applied, transparency composited on :data:`IMAGE_BACKGROUND`, and 16-bit grayscale scaled to
    8 bits (not clipped; 32-bit integer images are read as 16-bit, float images as 0–1)."""
    if im.width * im.height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} is {im.width}×{im.height}, more than {MAX_IMAGE_PIXELS} pixels: give a smaller image")
    im = ImageOps.exif_transpose(im)  # a phone photo taken upright is upright here too
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):  # high bit depth grayscale
        a = np.asarray(im, dtype=np.float64)
        full = 1.0 if im.mode == "F" and a.max(initial=0) <= 1.0 else 65535.0
        gray = np.clip(np.round(a / full * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (*IMAGE_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(back, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


@functools.lru_cache(maxsize=64)
def voice_sample(voice: Voice, sample_rate: int, samples: int) -> np.ndarray:
    """``samples`` of ``voice`` speaking :data:`VOICE_SAMPLE_TEXT` (from 0.1 s in), zero-padded if shorter.

    Cached per voice (eSpeak's output shifts slightly with what the process spoke before); read-only."""
    pcm = synthesize(VOICE_SAMPLE_TEXT, voice, sample_rate).pcm
    start = min(int(0.1 * sample_rate), max(len(pcm) - samples, 0))
    piece = pcm[start:start + samples]
    out = np.pad(piece, (0, samples - len(piece))).astype(np.float32)
    out.setflags(write=False)
    return out


def as_voice(voice: Voice | str | None, default: Voice) -> Voice:
    """A Voice from a Voice, an eSpeak voice name such as "en-gb-x-rp+f2", or None (the default)."""
    if voice is None:
        return default
    if isinstance(voice, Voice):
        return voice
    if isinstance(voice, str):
        return Voice(name=voice)
    raise ValueError(f"voice must be a Voice, an eSpeak voice name like 'en-us+f2', or None; got {type(voice).__name__}")
