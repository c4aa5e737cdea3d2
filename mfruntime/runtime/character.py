"""A character's conditioning: the reference image (identity) and the voice sample (speaker reference)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mfruntime.data.media import square_resize
from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.data.speech import Voice, synthesize

#: Text spoken to make a voice's speaker reference; never the utterance itself, so no audio of it leaks in.
VOICE_SAMPLE_TEXT = "Hello there, this is how my voice sounds today."
MIN_IMAGE_SIDE = 16
MAX_IMAGE_PIXELS = 64_000_000


def default_character(size: int, seed: int = 0) -> np.ndarray:
    """The built-in character: a rendered face of identity ``seed`` with a closed mouth, (size, size, 3) uint8."""
    return FaceRenderer(Identity.from_seed(seed), size).render(FaceState())


def prepare_image(image, size: int) -> np.ndarray:
    """Any RGB image → (size, size, 3) uint8: centre-cropped to a square and resized.

    Accepts a (H, W, 3) uint8 array, a PIL image (converted to RGB) or a path to an image file.
    Anything else — grayscale or RGBA arrays, other dtypes, tiny images, unreadable files — is a ValueError
    that says what was wrong.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"character image {path} does not exist")
        try:
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"character image {path} is {im.width}×{im.height}, more than {MAX_IMAGE_PIXELS} pixels")
                image = im.convert("RGB")
                image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"character image {path} could not be read as an image ({exc})") from exc
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
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
    return np.array(square_resize(image, size))  # a writable copy: the caller's image is never shared


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
