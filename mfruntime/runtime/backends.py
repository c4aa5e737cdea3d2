"""Execution backends for the chunk step: ``eager``, ``compile`` (torch.compile), ``tensorrt`` (Torch-TensorRT).

What gets compiled: the sublayers of every transformer block (modulation, q/k/v projection, self-,
cross-modal and phoneme attention, MLP), each with ``dynamic=False``. Their shapes never change during
a stream because the ring KV cache has a fixed size (sink + W chunks + current chunk). Compiling the whole
``chunk_step`` instead is not possible as is: it branches on the Python chunk index, so every chunk would
be a new graph (and torch 2.13's inductor fails on the dynamic-shape version: ``NameError: name 's35' is
not defined`` on CPU). The cache bookkeeping between sublayers stays eager, which costs little.

``auto`` picks by a fixed rule, logged once: ``tensorrt`` on a CUDA device with ``torch_tensorrt``
importable, else ``compile`` on CUDA, else ``eager`` — on this project's 2-core CPU the compiled sublayers
were not faster than eager (``benchmarks/runtime.py`` measures both side by side).
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from mfruntime.errors import UserFacingError
from mfruntime.model.generate import AVModel

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "compile", "tensorrt")
#: Block methods that run once per layer and stream per model call; compiled in place on the block.
SUBLAYERS = ("modulation", "project", "self_attention", "cross_query", "cross_modal_out", "phoneme_query",
             "phoneme_kv", "phoneme_out", "feed_forward")


class BackendUnavailable(UserFacingError, RuntimeError):
    """A requested backend cannot run on this machine; the message says why in one line."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when a GPU is visible, else CPU; anything else is checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device!r} requested but no CUDA GPU is visible to PyTorch (use device='cpu')")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


def why_unavailable(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run on ``device``, else the reason in one line."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}"
    if backend == "compile" and not hasattr(torch, "compile"):
        return "torch.compile needs PyTorch 2.0 or newer"
    if backend == "tensorrt":
        if device.type != "cuda":
            return f"the tensorrt backend needs a CUDA device, the session runs on {device.type}"
        if importlib.util.find_spec("torch_tensorrt") is None:
            return "the tensorrt backend needs the torch-tensorrt package (pip install torch-tensorrt matching your torch)"
    return None


def pick_backend(requested: str, device: torch.device) -> str:
    """The backend to use; raises BackendUnavailable when an explicitly requested one cannot run."""
    if requested == "auto":
        if device.type == "cuda":
            choice = "tensorrt" if why_unavailable("tensorrt", device) is None else "compile"
        else:
            choice = "eager"
        log.info("backend auto → %s on %s", choice, device)
        return choice
    reason = why_unavailable(requested, device)
    if reason:
        raise BackendUnavailable(reason)
    return requested


def apply_backend(model: AVModel, backend: str) -> AVModel:
    """Compile ``model``'s block sublayers in place for ``compile`` / ``tensorrt``; ``eager`` leaves it alone.

    Compilation happens lazily on the first chunk (seconds to a minute); later chunks reuse the graphs.
    """
    if backend == "eager":
        return model
    if backend == "compile":
        kwargs: dict = {"dynamic": False}
    elif backend == "tensorrt":
        import torch_tensorrt  # noqa: F401  registers the "torch_tensorrt" dynamo backend

        kwargs = {"dynamic": False, "backend": "torch_tensorrt",
                  "options": {"enabled_precisions": {torch.float32, torch.float16}, "min_block_size": 1}}
    else:
        raise ValueError(f"apply_backend takes eager, compile or tensorrt, got {backend!r}")
    for stream in model.transformer.streams.values():
        for blk in stream.blocks:
            for name in SUBLAYERS:
                if name.startswith("cross") and not blk.cross_modal:
                    continue
                setattr(blk, name, torch.compile(getattr(blk, name), **kwargs))  # instance attribute shadows the method
    return model
