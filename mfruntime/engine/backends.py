"""Execution backends for the chunk step: ``eager``, ``native``, ``compile`` (torch.compile), ``tensorrt``.

A backend is a :class:`~mfruntime.engine.kernels.Kernels` object the stream state carries; the model and its
weights are the same for every backend (one copy per process), nothing is patched:

* ``eager`` — the PyTorch reference kernels.
* ``native`` — the C++ kernels (csrc/, built by ``pip install``; CUDA ones when built with ``MFR_CUDA``)
  for the ring-cache attention, the cross-modal and phoneme attention and the ring write; everything
  else stays PyTorch.
* ``compile`` / ``tensorrt`` — the block sublayers (modulation, q/k/v projection, attention output
  projections, MLP) compiled with ``torch.compile(dynamic=False)`` (with the Torch-TensorRT backend for
  ``tensorrt``); the attention runs through the seam like eager. Each sublayer is compiled once as a plain
  function of (block, inputs), so every block of the same shape shares its graph. Shapes never change
  during a stream because the ring KV cache has a fixed size; a server batching several characters' chunks
  runs them in batches of :data:`COMPILED_BATCH_SIZES` rows only. Compiling the whole ``chunk_step`` is not
  possible as is: it branches on the Python chunk index, so every chunk would be a new graph.

``auto`` picks by a fixed rule, logged once: ``tensorrt`` on a CUDA device with ``torch_tensorrt``
importable, else ``compile`` on CUDA; on the CPU :data:`CPU_AUTO`, the backend measured fastest on this
project's CPU (``benchmarks/model.py`` measures eager and native side by side; docs/RUNTIME.md).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import threading

import torch

from mfruntime.engine import BACKENDS, native
from mfruntime.engine.kernels import REFERENCE, Kernels
from mfruntime.errors import UserFacingError
from mfruntime.model.block import StreamBlock

log = logging.getLogger(__name__)

#: Block sublayers that run once per layer and stream per model call; what compile/tensorrt compile.
SUBLAYERS = ("modulation", "project", "self_attention", "cross_query", "cross_modal_out", "phoneme_query",
             "phoneme_kv", "phoneme_out", "feed_forward")
#: The batch sizes the compiled backends run several characters' chunks at: a graph per size and stream for each
#: sublayer, so 3 × 2 = 6, under torch.compile's default limit of 8 before it falls back to eager.
COMPILED_BATCH_SIZES = (1, 2, 4)
#: What ``auto`` runs on the CPU: the backend measured fastest here (benchmarks/model.py, docs/RUNTIME.md).
CPU_AUTO = "native"
_kernels: dict[str, Kernels] = {}
_warned: list[str] = []  # the one "native kernels missing" warning of this process  # one Kernels object (and so one set of compiled graphs) per backend
_lock = threading.Lock()


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
    if backend == "native":
        return native.why_unavailable(device.type)
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
            reason = why_unavailable(CPU_AUTO, torch.device("cpu"))
            choice = "eager" if reason else CPU_AUTO
            if reason and not _warned:
                _warned.append(reason)
                log.warning("running the eager backend: %s", reason)  # once per process
        log.info("backend auto → %s on %s", choice, device)
        return choice
    reason = why_unavailable(requested, device)
    if reason:
        raise BackendUnavailable(reason)
    return requested


def kernels_for(backend: str) -> Kernels:
    """The kernels of ``backend`` (eager, native, compile or tensorrt), created once per process.

    Compilation happens lazily on the first chunk (seconds to a minute); later chunks reuse the graphs.
    """
    with _lock:
        if backend not in _kernels:
            _kernels[backend] = _make(backend)
        return _kernels[backend]


def _make(backend: str) -> Kernels:
    if backend == "eager":
        return REFERENCE
    if backend == "native":
        from mfruntime.engine import native_block, native_layer  # pick_backend has checked the module is built

        return Kernels("native", ring_attention=native.ring_attention, attend=native.attend,
                       ring_write=native.ring_write, sublayers=native_block.SUBLAYERS, layer=native_layer.layer_step)
    if backend == "compile":
        kwargs: dict = {"dynamic": False}
    elif backend == "tensorrt":
        import torch_tensorrt  # noqa: F401  registers the "torch_tensorrt" dynamo backend

        kwargs = {"dynamic": False, "backend": "torch_tensorrt",
                  "options": {"enabled_precisions": {torch.float32, torch.float16}, "min_block_size": 1}}
    else:
        raise ValueError(f"kernels_for takes eager, native, compile or tensorrt, got {backend!r}")
    compiled = {name: torch.compile(getattr(StreamBlock, name), **kwargs) for name in SUBLAYERS}
    # Fixed shapes: several characters' chunks run as batches of COMPILED_BATCH_SIZES rows only (engine/batch.py).
    return dataclasses.replace(REFERENCE, name=backend, sublayers=compiled, batch_sizes=COMPILED_BATCH_SIZES)
