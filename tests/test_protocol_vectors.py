"""The committed wire-format test vectors (tests/vectors) decode to their documented values, and the
encoder still writes them byte for byte (a change here is a protocol change: see docs/PROTOCOL.md)."""
import hashlib
import json
from pathlib import Path

import msgpack
import numpy as np
import pytest

from mfruntime.runtime.protocol import ProtocolError, decode_chunk, decode_reply, decode_request
from mfruntime.runtime.vectors import build

VECTORS = Path(__file__).parent / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.json"))


def _parts(name):
    files = sorted(VECTORS.glob(f"{name}.*.bin"))
    return [f.read_bytes() for f in files]


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"$hex"}:
        return bytes.fromhex(value["$hex"])
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def test_every_vector_is_committed_and_current():
    built = build()
    assert sorted(built) == NAMES
    for name, (msg, expect) in built.items():
        if isinstance(msg, list):
            assert _parts(name) == msg, f"{name}: the encoder no longer writes the committed bytes"
        else:
            assert (VECTORS / f"{name}.msgpack").read_bytes() == msg, name


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("stream_")])
def test_stream_vectors_decode_to_documented_values(name):
    expect = json.loads((VECTORS / f"{name}.json").read_text())
    parts = _parts(name)
    chunk = decode_chunk(parts)
    head = expect["header"]
    assert parts[0].decode() == expect["topic"] and chunk.header == head
    if head["video"]:
        assert chunk.frames.shape == (head["frames"], head["height"], head["width"], 3)
        flat = chunk.frames.reshape(-1)
    else:  # rig-only: no pixels
        assert chunk.frames is None and expect["video_bytes"] == 0
        flat = np.zeros(0, np.uint8)
    assert hashlib.sha256(flat.tobytes()).hexdigest() == expect["video_sha256"]
    assert hashlib.sha256(chunk.pcm.astype("<f4").tobytes()).hexdigest() == expect["pcm_sha256"]
    if head["controls"]:
        assert chunk.rig.shape == (head["frames"], head["controls"]) and chunk.rig.dtype == np.float32
        assert chunk.rig.reshape(-1)[:len(expect["rig_first"])].tolist() == expect["rig_first"]
        assert hashlib.sha256(chunk.rig.astype("<f4").tobytes()).hexdigest() == expect["rig_sha256"]
    else:
        assert chunk.rig is None and expect["rig_bytes"] == 0
    assert flat[:len(expect["video_first"])].tolist() == expect["video_first"]
    if flat.size:
        assert flat[-3:].tolist() == expect["video_last"]
    assert chunk.pcm[:len(expect["pcm_first"])].tolist() == expect["pcm_first"]
    assert isinstance(chunk.header["pts"], float) and chunk.pcm.dtype == np.float32


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("request_", "reply_"))])
def test_control_vectors_decode_to_documented_values(name):
    payload = (VECTORS / f"{name}.msgpack").read_bytes()
    expect = _from_json(json.loads((VECTORS / f"{name}.json").read_text())["decoded"])
    assert msgpack.unpackb(payload, raw=False) == expect
    if name.startswith("request_"):
        assert decode_request(payload) == expect
    else:
        assert decode_reply(payload) == expect


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("bad_")])
def test_bad_vectors_are_rejected_with_the_documented_reason(name):
    reason = json.loads((VECTORS / f"{name}.json").read_text())["error"]
    with pytest.raises(ProtocolError, match=reason):
        if name.startswith("bad_stream"):
            decode_chunk(_parts(name))
        else:
            decode_request((VECTORS / f"{name}.msgpack").read_bytes())
