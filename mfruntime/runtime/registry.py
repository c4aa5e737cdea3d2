"""Loaded models shared by every Session in the process (one copy of the weights per model and device)."""
from __future__ import annotations

import threading

import torch

from mfruntime.model.av import AVModel
from mfruntime.model.bundle import load_model, resolve

_models: dict[tuple[str, str], AVModel] = {}
_lock = threading.Lock()


def shared_model(name_or_path: str, device: torch.device) -> AVModel:
    """The model for (bundle, device), loaded on first use and then shared.

    The model is read-only at inference (eval mode, no autograd), so concurrent sessions can run it from
    several threads, whatever their backends (a backend is a set of kernels, engine/backends.py, not a
    copy of the weights); each Session keeps its own KV cache.
    """
    key = (str(resolve(name_or_path).resolve()), str(device))
    with _lock:
        model = _models.get(key)
        if model is None:
            model = load_model(key[0], device)
            _models[key] = model
        return model


def loaded() -> list[tuple[str, str]]:
    """Keys of the models loaded so far (bundle path, device)."""
    with _lock:
        return list(_models)
