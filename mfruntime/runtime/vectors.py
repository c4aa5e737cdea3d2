"""Test vectors for the wire format: ``python -m mfruntime.runtime.vectors tests/vectors``.

Every client (Python now, C# and C++ later) decodes these files and must get the values in the matching
JSON files. Stream messages are stored one file per part (``<name>.<i>.bin``); requests and replies as
``<name>.msgpack``. In JSON, byte strings are written as ``{"$hex": "..."}``. ``bad_*`` vectors must be
rejected by the decoder (their JSON gives the reason).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import msgpack
import numpy as np

from mfruntime.rig import CONTROLS
from mfruntime.runtime.protocol import PROTOCOL_VERSION, encode_chunk, encode_reply, encode_request


def pattern_frames(frames: int, size: int) -> np.ndarray:
    """(F, size, size, 3) uint8 with value (7f + 3y + 5x + 11c) mod 256."""
    f, y, x, c = np.meshgrid(np.arange(frames), np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    return ((7 * f + 3 * y + 5 * x + 11 * c) % 256).astype(np.uint8)


def pattern_pcm(samples: int) -> np.ndarray:
    """(S,) float32 with value (n mod 64 − 32) / 64: exactly representable, so no libm differences."""
    return ((np.arange(samples) % 64 - 32) / 64).astype(np.float32)


def pattern_rig(frames: int, controls: int) -> np.ndarray:
    """(F, controls) float32 with value ((n mod 32) − 16) / 32 for the n-th value in row-major order (exact)."""
    return ((np.arange(frames * controls) % 32 - 16) / 32).astype(np.float32).reshape(frames, controls)


def _jsonable(value):
    if isinstance(value, bytes):
        return {"$hex": value.hex()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _stream_expect(parts: list[bytes], frames: np.ndarray | None, pcm: np.ndarray, rig: np.ndarray | None = None) -> dict:
    flat = frames.reshape(-1) if frames is not None else np.zeros(0, np.uint8)
    return {"topic": parts[0].decode(), "header": msgpack.unpackb(parts[1], raw=False),
            "video_bytes": len(parts[2]), "video_sha256": hashlib.sha256(parts[2]).hexdigest(),
            "video_first": flat[:12].tolist(), "video_last": flat[-3:].tolist(),
            "pcm_bytes": len(parts[3]), "pcm_sha256": hashlib.sha256(parts[3]).hexdigest(),
            "pcm_first": [float(v) for v in pcm[:6]],
            "rig_bytes": len(parts[4]), "rig_sha256": hashlib.sha256(parts[4]).hexdigest(),
            "rig_first": [float(v) for v in (rig.reshape(-1)[:6] if rig is not None else [])]}


def build() -> dict[str, tuple[list[bytes] | bytes, dict]]:
    """name → (message: stream parts or one payload, expected decoded values)."""
    out: dict[str, tuple[list[bytes] | bytes, dict]] = {}
    f64, f16, p = pattern_frames(4, 64), pattern_frames(4, 16), pattern_pcm(2560)
    rig = pattern_rig(4, len(CONTROLS))
    parts = encode_chunk("npc-1", 3, 7, 1.12, f64, p, 25, 16000, eou=False, rig=rig, steps=4)
    out["stream_chunk_64px"] = (parts, _stream_expect(parts, f64, p, rig))
    parts = encode_chunk("npc-1", 5, 1, 3.36, None, p, 25, 16000, eou=False, rig=rig, size=(64, 64), steps=1)
    out["stream_chunk_rig_only"] = (parts, _stream_expect(parts, None, p, rig))
    parts = encode_chunk("héroïne", 1, 0, 0.0, f16, pattern_pcm(2560), 25, 16000, eou=True, interrupted=True, steps=2)
    out["stream_chunk_utf8_topic_eou"] = (parts, _stream_expect(parts, f16, pattern_pcm(2560)))
    empty = np.zeros((0, 64, 64, 3), np.uint8)
    parts = encode_chunk("npc-1", 4, 2, 2.4, empty, np.zeros(0, np.float32), 25, 16000, eou=True, interrupted=True)
    out["stream_end_marker_empty"] = (parts, _stream_expect(parts, empty, np.zeros(0, np.float32)))
    good = encode_chunk("npc-1", 3, 7, 1.12, f16, p, 25, 16000, eou=False)
    out["bad_stream_short_video"] = ([good[0], good[1], good[2][:-1], *good[3:]], {"error": "video part"})
    head = msgpack.unpackb(good[1], raw=False)
    head["v"] = PROTOCOL_VERSION + 1
    out["bad_stream_future_version"] = ([good[0], msgpack.packb(head), *good[2:]], {"error": "version"})
    head = msgpack.unpackb(good[1], raw=False)
    head["v"] = 2
    del head["steps"]
    out["bad_stream_version_2"] = ([good[0], msgpack.packb(head), *good[2:]], {"error": "version"})
    out["bad_stream_topic_mismatch"] = ([b"npc-2", *good[1:]], {"error": "topic"})
    with_rig = encode_chunk("npc-1", 3, 7, 1.12, f16, p, 25, 16000, eou=False, rig=rig)
    out["bad_stream_short_rig"] = ([*with_rig[:4], with_rig[4][:-1]], {"error": "rig part"})
    out["bad_stream_version_1_four_parts"] = (good[:4], {"error": "5 parts"})

    requests = {
        "request_ping": encode_request("ping", id=1),
        "request_say": encode_request("say", id=2, character="npc-1", text="Hello there!", steps=4),
        "request_drive": encode_request("drive", id=3, character="npc-1", sample_rate=16000,
                                        pcm=pattern_pcm(8).astype("<f4").tobytes()),
        "request_set_character": encode_request("set_character", id=4, character="npc-2", width=2, height=2,
                                                image=bytes(range(12))),
        "request_interrupt": encode_request("interrupt", id=5, character="npc-1"),
        "request_set_outputs": encode_request("set_outputs", id=6, character="npc-1", video=False, rig=True),
        "request_idle": encode_request("idle", id=7, character="npc-1", on=True),
        "reply_say_ok": encode_reply(2, utterance=3),
        "reply_error": encode_reply(9, "error", "unknown op 'dance': use one of ping, say, drive, idle, interrupt, "
                                                "set_character, set_steps, set_outputs, stats, state"),
    }
    for name, payload in requests.items():
        out[name] = (payload, {"decoded": _jsonable(msgpack.unpackb(payload, raw=False))})
    out["bad_request_not_a_map"] = (msgpack.packb([1, 2, 3]), {"error": "must be a msgpack map"})
    out["bad_request_unknown_op"] = (encode_request("dance", id=1), {"error": "unknown op"})
    out["bad_request_truncated"] = (encode_request("say", id=1, character="npc-1", text="Hello")[:-3],
                                    {"error": "not a msgpack message"})
    return out


def write(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (msg, expect) in build().items():
        if isinstance(msg, list):
            for i, part in enumerate(msg):
                (folder / f"{name}.{i}.bin").write_bytes(part)
                written.append(folder / f"{name}.{i}.bin")
        else:
            (folder / f"{name}.msgpack").write_bytes(msg)
            written.append(folder / f"{name}.msgpack")
        (folder / f"{name}.json").write_text(json.dumps(expect, indent=1, ensure_ascii=False) + "\n")
        written.append(folder / f"{name}.json")
    return written


if __name__ == "__main__":
    paths = write(sys.argv[1] if len(sys.argv) > 1 else "tests/vectors")
    print(f"wrote {len(paths)} files to {paths[0].parent}")
