"""The ``native`` kernels: the C++ implementation of the kernel seam (csrc/, bindings/), built by ``pip install``.

:func:`ring_attention`, :func:`attend` and :func:`ring_write` implement the seam's operations by calling the
compiled module ``_mfruntime_native`` directly (a few microseconds per call); with the fused block
sublayers of native_block.py and the fused layer of native_layer.py they make the ``native`` backend. The same kernels
are also registered as PyTorch custom operators — ``torch.ops.mfruntime.ring_attention``, ``.attend``,
``.ring_write`` — with fake (meta) implementations, so ``torch.compile`` and exporters can trace through
them.

The kernels are for inference: float32 tensors on the CPU — or float32/float16/bfloat16 on a CUDA device
when the CUDA module ``_mfruntime_native_cuda`` was built (``MFR_CUDA=ON``, see CMakeLists.txt) — with
the last dimension contiguous and the KV buffers contiguous. Anything else (autograd, another dtype or
device) falls back to the reference implementation for that call, so a native state never gives a wrong
result, only a slower one. Without a built module (no C++ compiler when the package was installed)
:func:`available` is False and :func:`why_unavailable` says why in one line.
"""
from __future__ import annotations

import importlib
import logging

import torch

from mfruntime.engine.kernels import reference_attend, reference_ring_attention, reference_ring_write

log = logging.getLogger(__name__)

ABI = 4  # the CPU module's `abi` this file speaks (the CUDA module's: CUDA_ABI)
CUDA_ABI = 1
CUDA_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_modules: dict[str, object] = {}
_errors: dict[str, str] = {}
_HOW = {"cpu": "install a C++ compiler (apt-get install g++) and reinstall mfruntime (pip install -e .)",
        "cuda": "reinstall mfruntime with the CUDA kernels on a machine with nvcc "
                "(MFR_CUDA=1 make setup, or pip install -e . -Ccmake.define.MFR_CUDA=ON)"}


def _load(device: str = "cpu"):
    """The compiled module for ``device`` ("cpu" or "cuda"), or None (the reason is kept for why_unavailable)."""
    if device not in _modules and device not in _errors:
        name = "_mfruntime_native" if device == "cpu" else "_mfruntime_native_cuda"
        try:
            mod = importlib.import_module(name)
            want = ABI if device == "cpu" else CUDA_ABI
            if getattr(mod, "abi", None) != want:
                raise ImportError(f"{name} speaks ABI {getattr(mod, 'abi', None)}, this mfruntime needs {want}: "
                                  "reinstall the package (pip install -e .) to rebuild it")
            _modules[device] = mod
        except ImportError as exc:
            _errors[device] = f"the native {device} kernels are not built ({exc}); {_HOW[device]}"
    return _modules.get(device)


def available(device: str = "cpu") -> bool:
    return _load(device) is not None


def why_unavailable(device: str = "cpu") -> str | None:
    _load(device)
    return _errors.get(device)


#: Below this many query-key pairs (B·H·N·T) a call runs on one thread: the fork/join of a thread team costs
#: more than it saves on small attentions (the audio stream's, the phoneme cross-attention).
PARALLEL_MIN_PAIRS = 32_768
_F32 = torch.float32


def _module_for(*tensors: torch.Tensor):
    """The compiled module that can take these tensors as they are, or None (the caller uses the reference)."""
    first = tensors[0]
    if not first.is_cuda:  # the common case, kept cheap: it runs ~120 times per chunk
        for t in tensors:
            if t.dtype is not _F32 or t.device.type != "cpu" or t.requires_grad or t.stride(-1) != 1:
                return None
        return _load("cpu")
    dt = first.dtype
    if dt not in CUDA_DTYPES or any(t.dtype != dt or t.device != first.device or t.stride(-1) != 1
                                    or t.requires_grad for t in tensors):
        return None
    return _load("cuda")


def _launch(mod, fn: str, first: torch.Tensor, pairs: int, *args) -> None:
    """Call ``mod.fn`` with the threads (CPU) or the dtype and stream (CUDA) of the tensors."""
    if not first.is_cuda:
        getattr(mod, fn)(*args, torch.get_num_threads() if pairs >= PARALLEL_MIN_PAIRS else 1)
    else:
        getattr(mod, fn)(CUDA_DTYPES[first.dtype], *args, torch.cuda.current_stream(first.device).cuda_stream)


class _Memo:
    """The last few conversions of rotation tables and masks: a forward pass reuses the same tensors in every
    layer, so each is converted once per pass instead of once per call."""

    def __init__(self, size: int = 8) -> None:
        self.size, self.entries = size, {}

    def get(self, obj, make):
        hit = self.entries.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if len(self.entries) >= self.size:
            self.entries.clear()
        value = make(obj)
        self.entries[id(obj)] = (obj, value)  # holds obj, so its id cannot be reused while the entry lives
        return value


_memo = _Memo()


def _rotation(cis: torch.Tensor, n: int, half: int, batch: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(1 or B, N, D/2) complex rotations → contiguous (cos, sin) floats and their batch stride (0: shared)."""
    def make(c):
        cs = torch.view_as_real(c.resolve_conj()).float().contiguous()  # (cb, N, D/2, 2)
        return cs, (0 if cs.shape[0] == 1 else cs.stride(0))
    cs, stride = _memo.get(cis, make)
    if cs.dim() != 4 or cs.shape[1] != n or cs.shape[2] != half or cs.shape[0] not in (1, batch) \
            or cs.device != device:
        raise ValueError(f"rotations must be (1 or {batch}, {n}, {half}) complex on {device}, got "
                         f"{tuple(cis.shape)} on {cis.device}")
    return cs, stride


def _validity(valid: torch.Tensor, t: int, batch: int, device: torch.device) -> tuple[torch.Tensor, int]:
    if valid.dtype != torch.bool or valid.dim() != 2 or valid.shape[1] != t or valid.shape[0] not in (1, batch) \
            or valid.device != device:
        raise ValueError(f"key validity must be a (1 or {batch}, {t}) bool tensor on {device}, got "
                         f"{tuple(valid.shape)} {valid.dtype} on {valid.device}")
    return _memo.get(valid, lambda m: (m.contiguous(), 0 if m.shape[0] == 1 else m.contiguous().stride(0)))


def _out(like: torch.Tensor, b: int, h: int, n: int, d: int) -> torch.Tensor:
    """(B, H, N, D) output stored as (B, N, H, D), so merging the heads afterwards is a view, not a copy."""
    return torch.empty(b, n, h, d, dtype=like.dtype, device=like.device).transpose(1, 2)


def ring_attention(q, k, v, k_buf, v_buf, offset: int, cis, valid):
    """Native :func:`~mfruntime.engine.kernels.reference_ring_attention` (same contract)."""
    mod = _module_for(q, k, v, k_buf, v_buf)
    if mod is None or not (k_buf.is_contiguous() and v_buf.is_contiguous()) or valid.dim() != 2:
        return reference_ring_attention(q, k, v, k_buf, v_buf, offset, cis, valid)
    b, h, n, d = q.shape
    t = k_buf.shape[2]
    if k.shape != q.shape or v.shape != q.shape or tuple(k_buf.shape) != (b, h, t, d) or v_buf.shape != k_buf.shape \
            or not 0 <= offset <= t - n:
        raise ValueError(f"ring_attention: q/k/v {tuple(q.shape)}, buffers {tuple(k_buf.shape)}, offset {offset} "
                         "do not fit together")
    cs, cs_stride = _rotation(cis, n, d // 2, b, q.device)
    valid, v_stride = _validity(valid, t, b, q.device)
    out = _out(q, b, h, n, d)
    _launch(mod, "ring_attention", q, b * h * n * t, q.data_ptr(), q.stride(), k.data_ptr(), k.stride(), v.data_ptr(), v.stride(),
            k_buf.data_ptr(), v_buf.data_ptr(), out.data_ptr(), out.stride(), cs.data_ptr(), cs_stride,
            valid.data_ptr(), v_stride, b, h, n, t, d, offset)
    return out, k_buf, v_buf


def attend(q, k, v, valid, cis=None):
    """Native :func:`~mfruntime.engine.kernels.reference_attend` (same contract)."""
    mod = _module_for(q, k, v)
    if mod is None or valid.dim() != 2:
        return reference_attend(q, k, v, valid, cis)
    b, h, n, d = q.shape
    t = k.shape[2]
    if tuple(k.shape) != (b, h, t, d) or v.shape != k.shape:
        raise ValueError(f"attend: q {tuple(q.shape)} and k/v {tuple(k.shape)}/{tuple(v.shape)} do not fit together")
    cs, cs_stride = _rotation(cis, n, d // 2, b, q.device) if cis is not None else (None, 0)
    valid, v_stride = _validity(valid, t, b, q.device)
    out = _out(q, b, h, n, d)
    _launch(mod, "attend", q, b * h * n * t, q.data_ptr(), q.stride(), k.data_ptr(), k.stride(), v.data_ptr(), v.stride(),
            out.data_ptr(), out.stride(), 0 if cs is None else cs.data_ptr(), cs_stride, valid.data_ptr(), v_stride,
            b, h, n, t, d)
    return out


def ring_write(k_buf, v_buf, k, v, chunk: int, ring_start: int, window: int) -> None:
    """Native :func:`~mfruntime.engine.kernels.reference_ring_write` (same contract)."""
    mod = _module_for(k_buf, v_buf, k.detach(), v.detach())
    if mod is None or not (k_buf.is_contiguous() and v_buf.is_contiguous()):
        return reference_ring_write(k_buf, v_buf, k, v, chunk, ring_start, window)
    b, h, n, d = k.shape
    t = k_buf.shape[2]
    if tuple(k_buf.shape) != (b, h, t, d) or v_buf.shape != k_buf.shape or v.shape != k.shape \
            or ring_start < 0 or ring_start + window * n > t:
        raise ValueError(f"ring_write: chunk {tuple(k.shape)} and buffers {tuple(k_buf.shape)} with ring_start "
                         f"{ring_start}, window {window} do not fit together")
    _launch(mod, "ring_write", k_buf, b * h * n * t, k_buf.data_ptr(), v_buf.data_ptr(), k.data_ptr(), k.stride(), v.data_ptr(),
            v.stride(), b, h, n, t, d, chunk, ring_start, window)


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
