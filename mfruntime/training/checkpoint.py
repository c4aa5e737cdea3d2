"""Checkpoints: safetensors weights + JSON state, written atomically, last K kept.

A checkpoint is a folder ``step-<7-digit step>/`` (e.g. ``step-0000200/``) holding ``model.safetensors``,
``ema.safetensors`` (when EMA is on), ``optim.safetensors`` (optimiser tensors)
and ``state.json`` (step, data position, RNG states, optimiser hyper-parameters,
and the SHA-256 of every file). It is written to a temporary folder and renamed,
so a kill mid-write never leaves a half checkpoint under a real name; on load,
any missing, truncated or altered file is an error that names it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mfruntime.errors import UserFacingError

log = logging.getLogger(__name__)

STATE_VERSION = 1


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint file is missing, corrupt or does not fit the model."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_rng(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode()


def decode_rng(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict → (tensors for safetensors, JSON-able rest)."""
    tensors, meta = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for pid, st in opt_state["state"].items():
        meta["state"][str(pid)] = {}
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{pid}.{key}"] = val.contiguous()
                meta["state"][str(pid)][key] = {"tensor": f"{pid}.{key}"}
            else:
                meta["state"][str(pid)][key] = {"value": val}
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in st.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, step: int, model: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None,
                    optimizer: dict, state: dict[str, Any], keep_last: int) -> Path:
    run_dir = Path(run_dir)
    final = run_dir / f"step-{step:07d}"
    tmp = run_dir / f".tmp-step-{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = {"model.safetensors": {k: v.detach().contiguous() for k, v in model.items()}}
    if ema is not None:
        files["ema.safetensors"] = {k: v.detach().contiguous() for k, v in ema.items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    files["optim.safetensors"] = opt_tensors
    for name, tensors in files.items():
        save_file(tensors, str(tmp / name))
    doc = {"version": STATE_VERSION, "step": step, "optimizer": opt_meta, **state,
           "files": {name: _sha256(tmp / name) for name in files}}
    (tmp / "state.json").write_text(json.dumps(doc, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in Path(run_dir).glob("step-*") if p.is_dir())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint folder → {"step", "model", "ema", "optimizer", "state"}."""
    path = Path(path)
    state_file = path / "state.json"
    try:
        doc = json.loads(state_file.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{state_file}: missing — {path} is not a complete checkpoint") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_file}: corrupt ({exc})") from exc
    if doc.get("version") != STATE_VERSION:
        raise CheckpointError(f"{state_file}: unsupported checkpoint version {doc.get('version')}")
    loaded = {}
    for name, digest in doc["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from the checkpoint")
        if _sha256(f) != digest:
            raise CheckpointError(f"{f}: corrupt or truncated (checksum mismatch); delete {path} to resume from an older checkpoint")
        try:
            loaded[name] = load_file(str(f))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{f}: unreadable ({exc})") from exc
    return {
        "step": int(doc["step"]),
        "model": loaded["model.safetensors"],
        "ema": loaded.get("ema.safetensors"),
        "optimizer": _unflatten_optimizer(loaded["optim.safetensors"], doc["optimizer"]),
        "state": doc,
    }


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Weights from a .safetensors file or a checkpoint folder (its EMA weights when present)."""
    path = Path(path)
    if path.is_dir():
        ck = load_checkpoint(path)
        return ck["ema"] if ck["ema"] is not None else ck["model"]
    try:
        return load_file(str(path))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such weights file") from exc
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from exc
