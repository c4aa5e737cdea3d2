"""The wire format of ``mf serve`` (docs/PROTOCOL.md is the specification; this module is its Python side).

Control (ROUTER ↔ DEALER/REQ): one msgpack map per request and per reply.
Stream (PUB → SUB): multipart ``[topic, header, video, pcm, rig]`` per chunk:
  topic  = the character id, UTF-8 (SUB filters on it as a prefix);
  header = msgpack map (:data:`HEADER_FIELDS`);
  video  = frames × height × width × 3 bytes, RGB, row-major, uint8 (empty when the header's ``video`` is false);
  pcm    = samples × 4 bytes, float32 little-endian, mono;
  rig    = frames × controls × 4 bytes, float32 little-endian (mfruntime/rig.py's CONTROLS, in order; empty when
           ``controls`` is 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from mfruntime.rig import RIG_VERSION

PROTOCOL_VERSION = 3  # 2: + the rig part, the header's video / controls / rig_version, op set_outputs; 3: + steps
STREAM_PARTS = 5
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # decoded with an error reply above this
MAX_SOCKET_MESSAGE_BYTES = 64 * 1024 * 1024  # ZeroMQ drops the connection of a peer that sends more
MAX_CHARACTER_ID = 64  # bytes of UTF-8
OPS = ("ping", "say", "drive", "idle", "interrupt", "set_character", "set_steps", "set_outputs", "stats", "state")

#: Header keys in the order they are written, with their msgpack types.
HEADER_FIELDS = {
    "v": int,  # protocol version
    "character": str,  # character id (same as the topic)
    "utterance": int,  # utterance id, per character, from 1
    "seq": int,  # chunk number within the utterance, from 0
    "pts": float,  # presentation time of the chunk's first frame and sample, seconds on the character's stream clock
    "width": int,
    "height": int,
    "frames": int,  # video frames in this chunk
    "fps": int,
    "sample_rate": int,
    "samples": int,  # PCM samples in this chunk
    "eou": bool,  # end of utterance: the last chunk of this utterance
    "interrupted": bool,  # the utterance was cut short by interrupt
    "video": bool,  # the video part carries the frames (false: rig-only, the video part is empty)
    "controls": int,  # rig values per frame in the rig part (0: no rig part)
    "rig_version": int,  # the control list the rig part's values are named by (mfruntime.rig.RIG_VERSION)
    "steps": int,  # denoising steps the chunk was made with (0: no model step — an end marker or an idle chunk)
}

# What each request needs besides "op" (type, required).
REQUEST_FIELDS: dict[str, dict[str, tuple[type | tuple, bool]]] = {
    "ping": {},
    "say": {"character": (str, True), "text": (str, True), "voice": (str, False), "steps": (int, False)},
    "drive": {"character": (str, True), "pcm": (bytes, True), "sample_rate": (int, True), "steps": (int, False)},
    "idle": {"character": (str, True), "on": (bool, True)},
    "interrupt": {"character": (str, True)},
    "set_character": {"character": (str, True), "image": (bytes, False), "width": (int, False), "height": (int, False),
                      "face_seed": (int, False), "voice": (str, False), "renderer": (str, False), "size": (int, False)},
    "set_steps": {"character": (str, True), "steps": (int, True), "min_steps": (int, False)},
    "set_outputs": {"character": (str, True), "video": (bool, False), "rig": (bool, False)},
    "stats": {"character": (str, False)},
    "state": {"character": (str, True)},
}


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text goes back to the client."""

    request_id = None  # the request's "id" when the message was a map that had one


def _unpack(payload: bytes, limit: int):
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, max_str_len=limit, max_bin_len=limit, max_array_len=100_000, max_map_len=1_000)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a msgpack message ({type(exc).__name__}: {exc})") from exc


def check_character_id(cid) -> str:
    if not isinstance(cid, str) or not cid or len(cid.encode()) > MAX_CHARACTER_ID or any(c in cid for c in "\0\n"):
        raise ProtocolError(f"character id must be a non-empty string of at most {MAX_CHARACTER_ID} bytes, got {cid!r:.80}")
    return cid


def decode_request(payload: bytes) -> dict:
    """Bytes from a client → a checked request map (raises ProtocolError with a message for the client)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request is {len(payload)} bytes, more than the {MAX_REQUEST_BYTES} allowed")
    req = _unpack(payload, MAX_REQUEST_BYTES)
    if not isinstance(req, dict):
        raise ProtocolError(f"a request must be a msgpack map, got {type(req).__name__}")
    try:
        return _check_request(req)
    except ProtocolError as exc:
        exc.request_id = req.get("id")  # so the error reply reaches the waiting client
        raise


def _check_request(req: dict) -> dict:
    v = req.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {v!r} is not supported; this server speaks version {PROTOCOL_VERSION}")
    op = req.get("op")
    if op not in REQUEST_FIELDS:
        raise ProtocolError(f"unknown op {op!r}: use one of {', '.join(OPS)}")
    for name, (typ, required) in REQUEST_FIELDS[op].items():
        if name not in req:
            if required:
                raise ProtocolError(f"{op} needs the field {name!r}")
            continue
        value = req[name]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
            ok = False  # msgpack's true/false is not a number
        if not ok:
            want = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
            raise ProtocolError(f"{op}: field {name!r} must be {want}, got {type(value).__name__}")
    if "character" in req:
        check_character_id(req["character"])
    return req


def encode_request(op: str, **fields) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, "op": op, **fields}, use_bin_type=True)


def encode_reply(request_id, status: str = "ok", error: str | None = None, **fields) -> bytes:
    reply = {"v": PROTOCOL_VERSION, "id": request_id, "status": status}
    if error is not None:
        reply["error"] = error
    reply.update(fields)
    return msgpack.packb(reply, use_bin_type=True)


def decode_reply(payload: bytes) -> dict:
    reply = _unpack(payload, MAX_REQUEST_BYTES)
    if not isinstance(reply, dict) or "status" not in reply:
        raise ProtocolError("a reply must be a msgpack map with a status")
    return reply


@dataclass(frozen=True)
class StreamChunk:
    """One decoded stream message."""

    header: dict
    frames: np.ndarray | None  # (frames, height, width, 3) uint8; None when the header's video is false
    pcm: np.ndarray  # (samples,) float32
    rig: np.ndarray | None = None  # (frames, controls) float32; None when controls is 0


def encode_chunk(character: str, utterance: int, seq: int, pts: float, frames: np.ndarray | None, pcm: np.ndarray,
                 fps: int, sample_rate: int, eou: bool, interrupted: bool = False, rig: np.ndarray | None = None,
                 size: tuple[int, int] | None = None, rig_version: int = RIG_VERSION, steps: int = 0) -> list[bytes]:
    """A chunk → the five frames of a stream message. frames None: rig-only (the video part is empty; the frame
    count comes from the PCM, the frame size from ``size`` = (width, height)); rig (F, controls) float32 or None;
    ``steps``: the denoising steps it was made with (0: none)."""
    pcm = np.ascontiguousarray(pcm, dtype="<f4")
    if pcm.ndim != 1:
        raise ValueError(f"pcm must be mono (S,), got {pcm.shape}")
    if frames is not None:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.shape}")
        n, height, width = frames.shape[:3]
    else:
        if size is None:
            raise ValueError("a chunk without frames (rig-only) needs size=(width, height)")
        width, height = size
        n = pcm.shape[0] * fps // sample_rate
    rig_part = b""
    controls = 0
    if rig is not None:
        rig = np.ascontiguousarray(rig, dtype="<f4")
        if rig.ndim != 2 or rig.shape[0] != n:
            raise ValueError(f"rig must be (frames={n}, controls), got {rig.shape}")
        controls, rig_part = int(rig.shape[1]), rig.tobytes()
    header = {"v": PROTOCOL_VERSION, "character": character, "utterance": int(utterance), "seq": int(seq),
              "pts": float(pts), "width": int(width), "height": int(height),
              "frames": int(n), "fps": int(fps), "sample_rate": int(sample_rate),
              "samples": int(pcm.shape[0]), "eou": bool(eou), "interrupted": bool(interrupted),
              "video": frames is not None, "controls": controls, "rig_version": int(rig_version), "steps": int(steps)}
    video = frames.tobytes() if frames is not None else b""
    return [character.encode(), msgpack.packb(header, use_bin_type=True), video, pcm.tobytes(), rig_part]


def decode_chunk(parts: list[bytes]) -> StreamChunk:
    """The five frames of a stream message → header, frames, PCM and rig frames, with every size checked."""
    if len(parts) != STREAM_PARTS:
        raise ProtocolError(f"a stream message has {STREAM_PARTS} parts (topic, header, video, pcm, rig), got {len(parts)}")
    topic, head, video, pcm, rig = (bytes(p) for p in parts)
    header = _unpack(head, 64 * 1024)
    if not isinstance(header, dict):
        raise ProtocolError("the stream header must be a msgpack map")
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"stream protocol version {header.get('v')!r}, this client reads {PROTOCOL_VERSION}")
    for name, typ in HEADER_FIELDS.items():
        value = header.get(name)
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = header[name] = float(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ProtocolError(f"stream header field {name!r} must be {typ.__name__}, got {value!r:.40}")
    if topic.decode("utf-8", "replace") != header["character"]:
        raise ProtocolError(f"topic {topic!r} does not match the header's character {header['character']!r}")
    if min(header["frames"], header["height"], header["width"], header["samples"], header["controls"],
           header["steps"]) < 0:
        raise ProtocolError("stream header sizes must not be negative")
    want_video = header["frames"] * header["height"] * header["width"] * 3 if header["video"] else 0
    if len(video) != want_video:
        raise ProtocolError(f"video part is {len(video)} bytes, the header says {want_video}")
    if len(pcm) != 4 * header["samples"]:
        raise ProtocolError(f"pcm part is {len(pcm)} bytes, the header says {4 * header['samples']}")
    want_rig = 4 * header["frames"] * header["controls"]
    if len(rig) != want_rig:
        raise ProtocolError(f"rig part is {len(rig)} bytes, the header says {want_rig}")
    frames = None
    if header["video"]:
        frames = np.frombuffer(video, np.uint8).reshape(header["frames"], header["height"], header["width"], 3).copy()
    rig_frames = np.frombuffer(rig, "<f4").reshape(header["frames"], header["controls"]).astype(np.float32) \
        if header["controls"] else None
    return StreamChunk(header, frames, np.frombuffer(pcm, "<f4").astype(np.float32), rig_frames)
