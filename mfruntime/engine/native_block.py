"""Native block sublayers: the ``native`` backend's replacements for :class:`~mfruntime.model.block.StreamBlock`'s
methods, through the kernel seam's ``Kernels.sublayers`` (the network is not patched).

Each sublayer is one or two calls into the compiled module (csrc/cpu/block_ops.cpp) instead of a chain of
small PyTorch ops:

* ``project``: layer norm fused with the adaLN modulation, then the q/k/v linear layer;
* ``self_attention`` / ``cross_modal_out`` / ``phoneme_out``: the output projection with the (gated)
  residual fused into its epilogue — ``x + g ⊙ (a·Wᵀ + b)`` written once;
* ``cross_query`` / ``phoneme_query``: the affine layer norm, then the query projection;
* ``feed_forward``: layer norm + modulation, the first linear layer with GELU (tanh) in its epilogue, the
  second with the gated residual in its.

The linear kernel streams weights packed K × N: one packed copy per linear layer of a block, made the first
time the block runs natively and remade when its weights change (tracked by the tensor's version counter)
— 8.4 MB for ``tiny`` (its blocks' linear weights). Anything the kernels do not
take (autograd, other dtypes or devices, widths that are not multiples of 32) runs the block's own method.
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from mfruntime.engine import native
from mfruntime.model.block import StreamBlock
from mfruntime.model.layers import merge_heads, split_heads

BIAS, GELU, RESIDUAL, GATED_RESIDUAL = 0, 1, 2, 3  # epilogues of the linear kernel (csrc/block_ops.h)
EPS = 1e-6  # the blocks' LayerNorm eps
LINEARS = ("qkv", "proj", "x_q", "x_out", "p_q", "p_out", "mlp.fc1", "mlp.fc2")


def _cpu_f32(t: torch.Tensor) -> bool:
    return t.dtype is torch.float32 and t.device.type == "cpu"


class _Linear:
    """One linear layer as the kernel takes it: the packed weight, remade when the weight changes — another
    Parameter object (``load_state_dict(assign=True)``), other storage (``.data = …``) or an in-place update
    (the tensor's version counter)."""

    def __init__(self, lin: nn.Linear) -> None:
        self.module = lin
        self.n, self.k = lin.out_features, lin.in_features
        self.key: tuple | None = None
        self.packed: torch.Tensor | None = None

    def current(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(packed weight, bias) as the kernel takes them, repacked first when the weight changed; None when
        the layer is not float32 on the CPU (the caller then runs the PyTorch path)."""
        w, b = self.module._parameters["weight"], self.module._parameters["bias"]
        if w is None or b is None or not _cpu_f32(w) or not _cpu_f32(b) or not b.is_contiguous():
            return None
        key = (id(w), w.data_ptr(), w._version)
        packed = self.packed
        if key != self.key or packed is None:
            src = w.detach().contiguous()
            packed = torch.empty(self.k, self.n, dtype=torch.float32)
            native._load("cpu").pack_weight(src.data_ptr(), self.n, self.k, packed.data_ptr())
            self.packed, self.key = packed, key
        return packed, b


class _Plan:
    """What the native sublayers need of one block, gathered once (module attribute lookups are slow)."""

    def __init__(self, blk: StreamBlock) -> None:
        self.blk = blk
        self.heads = blk.heads
        self.dim = blk.qkv.in_features
        self.fits = self.dim % 32 == 0 and blk.mlp.fc1.out_features % 32 == 0
        self.lin: dict[str, _Linear] = {}
        for name in LINEARS:
            mod = blk.get_submodule(name) if hasattr(blk, name.split(".")[0]) else None
            if mod is not None:
                self.lin[name] = _Linear(mod)
        self.norm_x = blk.norm_x if blk.cross_modal else None
        self.norm_p = blk.norm_p
        self.mod_memo: dict = {}  # adaLN modulations by conditioning tensor (native_layer.py)


_plans: dict[int, _Plan] = {}
_lock = threading.Lock()


def _plan(blk: StreamBlock) -> _Plan:
    plan = _plans.get(id(blk))
    if plan is None or plan.blk is not blk:
        with _lock:
            plan = _plans.get(id(blk))
            if plan is None or plan.blk is not blk:
                plan = _plans[id(blk)] = _Plan(blk)
    return plan


def packed(lin: nn.Linear) -> torch.Tensor:
    """``lin.weight`` (N × K) packed K × N, the linear kernel's layout (for tests and tools; the sublayers keep
    theirs in their block's plan)."""
    got = _Linear(lin).current()
    if got is None:
        raise ValueError("packed() needs a float32 CPU linear layer")
    return got[0]


def _ok(*tensors: torch.Tensor) -> bool:
    """Whether the kernels take these as they are: float32 CPU, no autograd, last dim contiguous."""
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t.dtype is not torch.float32 or t.device.type != "cpu" or t.stride(-1) != 1 or (grad and t.requires_grad):
            return False
    return native._load("cpu") is not None


def _rows(x: torch.Tensor) -> torch.Tensor | None:
    """x (B, N, D) as contiguous rows (B·N, D) without a copy, or None."""
    return x.view(-1, x.shape[-1]) if x.is_contiguous() else None


def _per_batch(m: torch.Tensor, n: int, batch: int) -> tuple[torch.Tensor, int, int] | None:
    """A modulation or gate (B, 1, D) (one row per batch element) or (B, N, D) (one per token) →
    (tensor, row stride, rows per modulation row), or None."""
    if m.dim() != 3 or m.shape[0] != batch:
        return None
    if m.shape[1] == 1:
        return m, m.stride(0), n
    if m.shape[1] == n:
        m = m.contiguous()
        return m, m.shape[-1], 1
    return None


class _NotNative(Exception):
    """This call is not for the kernels (a tensor or weight that is not float32 on the CPU, an unusual shape):
    the sublayer runs the block's own method instead."""


def _layer_norm(x2: torch.Tensor, norm: nn.LayerNorm | None, mod: tuple | None) -> torch.Tensor:
    """LN(x) (affine when ``norm`` is given) and, with ``mod`` = (shift, scale, stride, rows per row), the
    adaLN modulation, as new contiguous rows."""
    m, d = x2.shape
    out = torch.empty(m, d, dtype=torch.float32)
    w = b = 0
    if norm is not None:
        if not (_cpu_f32(norm.weight) and _cpu_f32(norm.bias)):
            raise _NotNative
        w, b = norm.weight.data_ptr(), norm.bias.data_ptr()
    shift = scale = 0
    stride, per = d, 1
    if mod is not None:
        sh, sc, stride, per = mod
        shift, scale = sh.data_ptr(), sc.data_ptr()
    native._load("cpu").layer_norm_modulate(x2.data_ptr(), x2.stride(0), out.data_ptr(), m, d, EPS, w, b, shift,
                                           scale, stride, per, torch.get_num_threads())
    return out


def _linear(x2: torch.Tensor, lin: _Linear, epilogue: int = BIAS, residual: torch.Tensor | None = None,
            gate: tuple | None = None) -> torch.Tensor:
    wb = lin.current()
    if wb is None:
        raise _NotNative
    packed_w, bias = wb  # held until the call returns
    m = x2.shape[0]
    y = torch.empty(m, lin.n, dtype=torch.float32)
    r, ldr = (residual.data_ptr(), residual.stride(0)) if residual is not None else (0, 0)
    g, g_stride, per = (gate[0].data_ptr(), gate[1], gate[2]) if gate is not None else (0, 0, 1)
    native._load("cpu").linear(x2.data_ptr(), x2.stride(0), packed_w.data_ptr(), bias.data_ptr(), y.data_ptr(),
                               lin.n, m, lin.k, lin.n, epilogue, r, ldr, g, g_stride, per, torch.get_num_threads())
    return y


def _start(blk: StreamBlock, x: torch.Tensor, *tensors: torch.Tensor) -> tuple[_Plan, torch.Tensor]:
    """The block's plan and x as rows, or _NotNative."""
    plan, x2 = _plan(blk), _rows(x)
    if x2 is None or not plan.fits or not _ok(x, *tensors):
        raise _NotNative
    return plan, x2


def _modulation(shift: torch.Tensor, scale: torch.Tensor, n: int, batch: int) -> tuple:
    sh, sc = _per_batch(shift, n, batch), _per_batch(scale, n, batch)
    if sh is None or sc is None or sh[1:] != sc[1:]:
        raise _NotNative
    return sh[0], sc[0], sh[1], sh[2]


def _gate(gate: torch.Tensor, n: int, batch: int) -> tuple:
    g = _per_batch(gate, n, batch)
    if g is None:
        raise _NotNative
    return g


def _merged(a: torch.Tensor) -> torch.Tensor:
    """Attention output (B, H, N, Dh) as rows (B·N, H·Dh): a view when it is stored (B, N, H, Dh), as the
    native attention kernels store it; a copy otherwise."""
    t = a.transpose(1, 2)  # (B, N, H, Dh)
    if t.is_contiguous():
        return t.view(-1, t.shape[2] * t.shape[3])
    return merge_heads(a).reshape(-1, a.shape[1] * a.shape[3])


def _native_project(blk, x, shift, scale):
    plan, x2 = _start(blk, x, shift, scale)
    b, n, d = x.shape
    h = _layer_norm(x2, None, _modulation(shift, scale, n, b))
    q, k, v = _linear(h, plan.lin["qkv"]).view(b, n, 3 * d).chunk(3, dim=-1)
    return split_heads(q, plan.heads), split_heads(k, plan.heads), split_heads(v, plan.heads)


def _native_self_attention(blk, x, a, gate):
    plan, x2 = _start(blk, x, a, gate)
    return _linear(_merged(a), plan.lin["proj"], GATED_RESIDUAL, x2, _gate(gate, x.shape[1], x.shape[0])).view(x.shape)


def _native_cross_query(blk, x):
    plan, x2 = _start(blk, x)
    if plan.norm_x is None:
        raise _NotNative
    return split_heads(_linear(_layer_norm(x2, plan.norm_x, None), plan.lin["x_q"]).view(x.shape), plan.heads)


def _native_cross_modal_out(blk, x, a):
    plan, x2 = _start(blk, x, a)
    if "x_out" not in plan.lin:
        raise _NotNative
    return _linear(_merged(a), plan.lin["x_out"], RESIDUAL, x2).view(x.shape)


def _native_phoneme_query(blk, x):
    plan, x2 = _start(blk, x)
    return split_heads(_linear(_layer_norm(x2, plan.norm_p, None), plan.lin["p_q"]).view(x.shape), plan.heads)


def _native_phoneme_out(blk, x, a):
    plan, x2 = _start(blk, x, a)
    return _linear(_merged(a), plan.lin["p_out"], RESIDUAL, x2).view(x.shape)


def _native_feed_forward(blk, x, shift, scale, gate):
    """x + gate ⊙ fc2(gelu(fc1(LN(x)·(1 + scale) + shift))), in three native calls."""
    plan, x2 = _start(blk, x, shift, scale, gate)
    b, n, _ = x.shape
    h = _layer_norm(x2, None, _modulation(shift, scale, n, b))
    u = _linear(h, plan.lin["mlp.fc1"], GELU)
    return _linear(u, plan.lin["mlp.fc2"], GATED_RESIDUAL, x2, _gate(gate, n, b)).view(x.shape)


def _sublayer(name: str, fast):
    """The native sublayer ``name``: the kernels when they take the call, else the block's own method."""
    own = getattr(StreamBlock, name)

    def run(blk: StreamBlock, *args):
        try:
            return fast(blk, *args)
        except _NotNative:
            return own(blk, *args)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"Native StreamBlock.{name} (falls back to it for calls the kernels do not take)."
    return run


#: What the native backend puts in ``Kernels.sublayers`` (modulation and the phoneme keys/values stay PyTorch:
#: they run once per chunk step on one row, or once per chunk).
SUBLAYERS = {name: _sublayer(name, fast) for name, fast in (
    ("project", _native_project), ("self_attention", _native_self_attention), ("cross_query", _native_cross_query),
    ("cross_modal_out", _native_cross_modal_out), ("phoneme_query", _native_phoneme_query),
    ("phoneme_out", _native_phoneme_out), ("feed_forward", _native_feed_forward))}

