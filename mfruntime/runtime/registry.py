"""Loaded models shared by every Session in the process (one copy of the weights per model, device, backend)."""
from __future__ import annotations

import threading

import torch

from mfruntime.model.bundle import load_model, resolve
from mfruntime.model.generate import AVModel
from mfruntime.runtime.backends import apply_backend

_models: dict[tuple[str, str, str], AVModel] = {}
_lock = threading.Lock()


def shared_model(name_or_path: str, device: torch.device, backend: str) -> AVModel:
    """The model for (bundle, device, backend), loaded on first use and then shared.

    The model is read-only at inference (eval mode, no autograd), so concurrent sessions can run it from
    several threads; each Session keeps its own KV cache. Compiled backends get their own copy because
    compilation replaces the blocks' sublayer methods.
    """
    key = (str(resolve(name_or_path).resolve()), str(device), backend)
    with _lock:
        model = _models.get(key)
        if model is None:
            model = apply_backend(load_model(key[0], device), backend)
            _models[key] = model
        return model


def loaded() -> list[tuple[str, str, str]]:
    """Keys of the models loaded so far (bundle path, device, backend)."""
    with _lock:
        return list(_models)
