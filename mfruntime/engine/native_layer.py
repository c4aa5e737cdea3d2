"""The native backend's fused layer: one call into C++ runs a whole layer of a chunk step for both streams
(csrc/layer_step.h) — the self-attention over the ring cache, the cross-modal and phoneme attention, the MLP
and every layer norm, modulation and residual between them — where the per-sublayer path
(native_block.py) makes about twenty calls. The math is the same; tests compare the two paths and eager.

It runs when :meth:`TwinStreamTransformer._run` offers it a chunk step without autograd on float32 CPU
tensors; anything else returns False and the layer runs sublayer by sublayer.
"""
from __future__ import annotations

import torch

from mfruntime.engine import native
from mfruntime.engine.native_block import _cpu_f32, _plan
from mfruntime.model.block import StreamBlock


def _weights(blk: StreamBlock, keep: list) -> list[int] | None:
    """The 23 weight values of ``blk`` for the kernel (addresses of packed weights, biases, norms; widths),
    repacking what changed, or None when the block does not fit the kernel. The tensors behind the addresses
    go into ``keep``, so they live until the call returns whatever another thread does."""
    plan = _plan(blk)
    keep.append(plan)
    if not plan.fits or "x_q" not in plan.lin or plan.norm_x is None:
        return None
    out: list[int] = []
    for name in ("qkv", "proj", "x_q", "x_out", "p_q", "p_out", "mlp.fc1", "mlp.fc2"):
        wb = plan.lin[name].current()
        if wb is None:
            return None
        keep += wb
        out += [wb[0].data_ptr(), wb[1].data_ptr()]
    norms = (plan.norm_x.weight, plan.norm_x.bias, plan.norm_p.weight, plan.norm_p.bias)
    if not all(_cpu_f32(t) and t.is_contiguous() for t in norms):
        return None
    keep += norms
    return out + [t.data_ptr() for t in norms] + [plan.dim, plan.lin["mlp.fc1"].n, plan.heads]


def _modulation(blk: StreamBlock, c: torch.Tensor) -> torch.Tensor:
    """adaLN modulation (B, 1, 6·D) of ``c``, memoised per (block, conditioning tensor, weights): a chunk step's
    conditioning is itself memoised per noise level (StreamState.cond_memo), so the same few tensors recur."""
    plan = _plan(blk)
    memo = plan.mod_memo
    w, b = blk.ada.weight, blk.ada.bias
    key = (id(c), id(w), w.data_ptr(), w._version, id(b), b._version)
    hit = memo.get(key)
    if hit is not None and hit[0] is c:
        return hit[1]
    if len(memo) >= 64:
        memo.clear()  # callers hold what they use: clearing frees nothing in flight
    m = blk.ada(torch.nn.functional.silu(c))  # (B, 1, 6·D)
    memo[key] = (c, m)
    return m


def _pass_parts(p) -> tuple:
    """A pass's rotations and masks as the kernel takes them, converted once per pass (all layers share them)."""
    parts = p.backend.get("native")
    if parts is None:
        cis = torch.view_as_real(p.rope).contiguous()  # (1 or B, N, Dh/2, 2): shared, or per row (a batch of states)
        cis_t = torch.view_as_real(p.rope_t).contiguous()
        valid, ph_valid = p.self_mask.contiguous(), p.ph_mask.contiguous()  # (1 or B, T), (B, M)
        parts = p.backend["native"] = (cis, cis_t, valid, ph_valid)
    return parts


def _row_stride(t: torch.Tensor) -> int:
    """Elements between batch rows, 0 when one row serves the whole batch."""
    return 0 if t.shape[0] == 1 else t.stride(0)


def _fits(t: torch.Tensor) -> bool:
    return _cpu_f32(t) and not t.requires_grad


def layer_step(model, layer: int, passes: dict, commit: bool) -> bool:
    """Run layer ``layer`` of a chunk step for every stream in ``passes`` natively; False when it cannot."""
    mod = native._load("cpu")
    if mod is None or torch.is_grad_enabled() or len(passes) != 2:
        return False
    calls: list = []
    keep: list = []  # everything whose address goes to C++, alive until the call returns
    for s, p in passes.items():
        blk = model.streams[s].blocks[layer]
        w = _weights(blk, keep)
        ring = p.backend.get("ring")  # the stream's ring cache (engine/step.py)
        if w is None or ring is None or not p.h.is_contiguous() or not _fits(p.h) or p.c.shape[1] != 1:
            return False
        b, n, d = p.h.shape
        m = _modulation(blk, p.c)
        pk, pv = p.phoneme_keys(layer, blk)
        k_buf, v_buf = ring.k[layer], ring.v[layer]
        cis, cis_t, valid, ph_valid = _pass_parts(p)
        heads = w[-1]
        t, mm = k_buf.shape[2], pk.shape[2]
        # Shapes checked here, not assumed by the kernel: a mismatch (e.g. a batch other than the cache's) would
        # otherwise write outside the buffers; the sublayer path then raises its own clear error.
        if (tuple(k_buf.shape) != (b, heads, t, d // heads) or v_buf.shape != k_buf.shape
                or not (k_buf.is_contiguous() and v_buf.is_contiguous()) or ring.scratch_start + n != t
                or tuple(m.shape) != (b, 1, 6 * d) or not m.is_contiguous() or not _fits(m)
                or tuple(pk.shape) != (b, heads, mm, d // heads) or pv.shape != pk.shape
                or pk.stride(-1) != 1 or pv.stride(-1) != 1 or not (_fits(pk) and _fits(pv))
                or cis.shape[0] not in (1, b) or tuple(cis.shape[1:]) != (n, d // heads // 2, 2)
                or cis_t.shape != cis.shape or valid.shape[0] not in (1, b) or valid.shape[1] != t
                or tuple(ph_valid.shape) != (b, mm)
                or valid.dtype is not torch.bool or ph_valid.dtype is not torch.bool):
            return False
        keep += [m, pk, pv, cis, cis_t, valid, ph_valid, k_buf, v_buf, p.h]
        calls += [w, [p.h.data_ptr(), b, n, m.data_ptr(), m.stride(0), k_buf.data_ptr(), v_buf.data_ptr(),
                      t, ring.scratch_start, cis.data_ptr(), cis_t.data_ptr(), _row_stride(cis), valid.data_ptr(),
                      _row_stride(valid), pk.data_ptr(), pv.data_ptr(), mm, pk.stride(0), pk.stride(1), pk.stride(2),
                      pv.stride(0), pv.stride(1), pv.stride(2), ph_valid.data_ptr(), ph_valid.stride(0)]]
    mod.layer_step(*calls, torch.get_num_threads())
    if commit:  # the chunk's rotated keys and values, where the kernel wrote them
        for p in passes.values():
            ring = p.backend["ring"]
            p.write.append((ring.k[layer][:, :, ring.scratch_start:], ring.v[layer][:, :, ring.scratch_start:]))
    return True
