"""The ``native`` kernels: the C++ implementation of the kernel seam (csrc/, bindings/), built by ``pip install``.

:data:`NATIVE` is a :class:`~mfruntime.engine.kernels.Kernels` whose operations call the compiled module
``_mfruntime_native`` directly (a few microseconds per call). The same kernels are also registered as PyTorch
custom operators — ``torch.ops.mfruntime.ring_attention``, ``.attend``, ``.ring_write`` — with fake (meta)
implementations, so ``torch.compile`` and exporters can trace through them.

The kernels are for inference: float32 tensors on the CPU, last dimension contiguous, KV buffers contiguous.
Anything else (autograd, another dtype or device) falls back to the reference implementation for that call,
so a native state never gives a wrong result, only a slower one. Without a built module (no C++ compiler
when the package was installed) :func:`available` is False and :func:`why_unavailable` says why in one line.
"""
from __future__ import annotations

import importlib
import logging

import torch

from mfruntime.engine.kernels import (Kernels, reference_attend, reference_ring_attention, reference_ring_write)

log = logging.getLogger(__name__)

ABI = 1  # the module's `abi` this file speaks
_module = None
_error: str | None = None


def _load():
    global _module, _error
    if _module is None and _error is None:
        try:
            mod = importlib.import_module("_mfruntime_native")
            if getattr(mod, "abi", None) != ABI:
                raise ImportError(f"it speaks ABI {getattr(mod, 'abi', None)}, this mfruntime needs {ABI}: "
                                  "reinstall the package (pip install -e .) to rebuild it")
            _module = mod
        except ImportError as exc:
            _error = (f"the native kernels are not built ({exc}); install a C++ compiler (apt-get install g++) "
                      "and reinstall mfruntime (pip install -e .)")
    return _module


def available() -> bool:
    return _load() is not None


def why_unavailable() -> str | None:
    _load()
    return _error


def _fits(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors as they are (else the caller falls back to the reference)."""
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu" or t.stride(-1) != 1 or t.requires_grad:
            return False
    return True


def _rotation(cis: torch.Tensor, n: int, half: int) -> tuple[torch.Tensor, int]:
    """(1 or B, N, D/2) complex rotations → contiguous (cos, sin) floats and their batch stride (0: shared)."""
    cs = torch.view_as_real(cis.resolve_conj()).contiguous()  # (cb, N, D/2, 2)
    if cs.dim() != 4 or tuple(cs.shape[1:]) != (n, half, 2):
        raise ValueError(f"rotations must be (1 or B, {n}, {half}) complex, got {tuple(cis.shape)}")
    return cs, (0 if cs.shape[0] == 1 else cs.stride(0))


def _validity(valid: torch.Tensor, t: int) -> tuple[torch.Tensor, int]:
    if valid.dtype != torch.bool or valid.dim() != 2 or valid.shape[1] != t:
        raise ValueError(f"key validity must be a (1 or B, {t}) bool tensor, got {tuple(valid.shape)} {valid.dtype}")
    valid = valid.contiguous()
    return valid, (0 if valid.shape[0] == 1 else valid.stride(0))


def _out(b: int, h: int, n: int, d: int) -> torch.Tensor:
    """(B, H, N, D) output stored as (B, N, H, D), so merging the heads afterwards is a view, not a copy."""
    return torch.empty(b, n, h, d).transpose(1, 2)


def ring_attention(q, k, v, k_buf, v_buf, offset: int, cis, valid):
    """Native :func:`~mfruntime.engine.kernels.reference_ring_attention` (same contract)."""
    mod = _load()
    if (mod is None or (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))
            or not _fits(q, k, v, k_buf, v_buf) or not (k_buf.is_contiguous() and v_buf.is_contiguous())
            or valid.dim() != 2):
        return reference_ring_attention(q, k, v, k_buf, v_buf, offset, cis, valid)
    b, h, n, d = q.shape
    t = k_buf.shape[2]
    if k.shape != q.shape or v.shape != q.shape or tuple(k_buf.shape) != (b, h, t, d) or v_buf.shape != k_buf.shape \
            or not 0 <= offset <= t - n:
        raise ValueError(f"ring_attention: q/k/v {tuple(q.shape)}, buffers {tuple(k_buf.shape)}, offset {offset} "
                         "do not fit together")
    cs, cs_stride = _rotation(cis, n, d // 2)
    valid, v_stride = _validity(valid, t)
    out = _out(b, h, n, d)
    mod.ring_attention(q.data_ptr(), q.stride(), k.data_ptr(), k.stride(), v.data_ptr(), v.stride(),
                       k_buf.data_ptr(), v_buf.data_ptr(), out.data_ptr(), out.stride(), cs.data_ptr(), cs_stride,
                       valid.data_ptr(), v_stride, b, h, n, t, d, offset, torch.get_num_threads())
    return out, k_buf, v_buf


def attend(q, k, v, valid, cis=None):
    """Native :func:`~mfruntime.engine.kernels.reference_attend` (same contract)."""
    mod = _load()
    if mod is None or not _fits(q, k, v) or valid.dim() != 2 or (torch.is_grad_enabled() and q.requires_grad):
        return reference_attend(q, k, v, valid, cis)
    b, h, n, d = q.shape
    t = k.shape[2]
    if tuple(k.shape) != (b, h, t, d) or v.shape != k.shape:
        raise ValueError(f"attend: q {tuple(q.shape)} and k/v {tuple(k.shape)}/{tuple(v.shape)} do not fit together")
    cs, cs_stride = _rotation(cis, n, d // 2) if cis is not None else (None, 0)
    valid, v_stride = _validity(valid, t)
    out = _out(b, h, n, d)
    mod.attend(q.data_ptr(), q.stride(), k.data_ptr(), k.stride(), v.data_ptr(), v.stride(), out.data_ptr(),
               out.stride(), 0 if cs is None else cs.data_ptr(), cs_stride, valid.data_ptr(), v_stride, b, h, n, t, d,
               torch.get_num_threads())
    return out


def ring_write(k_buf, v_buf, k, v, chunk: int, ring_start: int, window: int) -> None:
    """Native :func:`~mfruntime.engine.kernels.reference_ring_write` (same contract)."""
    mod = _load()
    if mod is None or not _fits(k_buf, v_buf, k, v) or not (k_buf.is_contiguous() and v_buf.is_contiguous()):
        return reference_ring_write(k_buf, v_buf, k, v, chunk, ring_start, window)
    b, h, n, d = k.shape
    t = k_buf.shape[2]
    if tuple(k_buf.shape) != (b, h, t, d) or v_buf.shape != k_buf.shape or v.shape != k.shape \
            or ring_start < 0 or ring_start + window * n > t:
        raise ValueError(f"ring_write: chunk {tuple(k.shape)} and buffers {tuple(k_buf.shape)} with ring_start "
                         f"{ring_start}, window {window} do not fit together")
    mod.ring_write(k_buf.data_ptr(), v_buf.data_ptr(), k.data_ptr(), k.stride(), v.data_ptr(), v.stride(),
                   b, h, n, t, d, chunk, ring_start, window, torch.get_num_threads())


NATIVE = Kernels("native", ring_attention=ring_attention, attend=attend, ring_write=ring_write)


# --- PyTorch custom operators (for torch.compile / export tracing) ------------------------------------------
@torch.library.custom_op("mfruntime::ring_attention", mutates_args=("k_buf", "v_buf"))
def _op_ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor,
                       offset: int, cis: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return ring_attention(q, k, v, k_buf, v_buf, offset, cis, valid)[0].clone()


@_op_ring_attention.register_fake
def _(q, k, v, k_buf, v_buf, offset, cis, valid):
    return torch.empty_like(q)


@torch.library.custom_op("mfruntime::attend", mutates_args=())
def _op_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor,
               cis: torch.Tensor | None = None) -> torch.Tensor:
    return attend(q, k, v, valid, cis).clone()


@_op_attend.register_fake
def _(q, k, v, valid, cis=None):
    return torch.empty_like(q)


@torch.library.custom_op("mfruntime::ring_write", mutates_args=("k_buf", "v_buf"))
def _op_ring_write(k_buf: torch.Tensor, v_buf: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int,
                   ring_start: int, window: int) -> None:
    ring_write(k_buf, v_buf, k, v, chunk, ring_start, window)


@_op_ring_write.register_fake
def _(k_buf, v_buf, k, v, chunk, ring_start, window):
    return None
