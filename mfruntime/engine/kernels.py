"""The kernel seam: the cache-touching operations of a chunk step, called through one :class:`Kernels` object.

A chunk step (transformer.py) does three things that touch keys/values and that a backend may implement
natively; every call goes through the ``Kernels`` the stream state carries, so a backend swaps the
implementation without patching the network and without a second copy of the weights:

* ``ring_attention`` — the chunk's self-attention over its ring cache. Rotates the chunk's queries and keys
  by their positions (rotary, RoFormer eq. 34), writes the rotated keys and the values into the cache's
  scratch region [sink | ring | **scratch**], then attends from every query over the whole buffer,
  skipping key positions that hold nothing (an empty ring slot). In a chunk step the block-causal mask
  reduces to exactly this key-validity vector: every query of the chunk sees the sink, the filled ring
  slots (all within the window) and its whole chunk.
* ``attend`` — attention of (optionally rotated) queries over given keys/values with a key-validity mask:
  the cross-modal attention (the other stream's buffer) and the phoneme cross-attention.
* ``ring_write`` — the commit: a finished chunk's keys/values go into ring slot ``chunk mod W``.

Shapes: q, k, v (B, H, N, Dh); buffers (B, H, T, Dh) with T = sink + W·N + N; rotations ``cis``
(1 or B, N, Dh/2) complex64 (unit e^{iθ}); validity masks (1 or B, T) bool, True = attend.

``REFERENCE`` is the PyTorch implementation (also the one training uses: with autograd the chunk's keys are
concatenated instead of written in place, so the graph stays valid). The native C++ kernels
(mfruntime/engine/native.py) implement the same contract for inference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from mfruntime.model.layers import masked_attention, rotated_attention
from mfruntime.model.rope import Rotary


def reference_ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_buf: torch.Tensor,
                             v_buf: torch.Tensor, offset: int, cis: torch.Tensor, valid: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-attention of a chunk over [sink | ring | chunk]; returns (out, all keys, all values).

    Without autograd the rotated keys and the values are written into ``k_buf``/``v_buf`` at ``offset`` and
    the returned keys/values are the buffers themselves; with autograd they are concatenated (graph kept,
    buffers untouched).
    """
    q, k = Rotary.rotate(q, cis), Rotary.rotate(k, cis)
    if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or q.requires_grad):
        k_all = torch.cat([k_buf[:, :, :offset], k], dim=2)
        v_all = torch.cat([v_buf[:, :, :offset], v], dim=2)
    else:
        k_buf[:, :, offset:offset + k.shape[2]] = k
        v_buf[:, :, offset:offset + v.shape[2]] = v
        k_all, v_all = k_buf, v_buf
    return masked_attention(q, k_all, v_all, valid), k_all, v_all


#: Attention of q (rotated by ``cis`` first, when given) over k/v, keys masked by ``valid`` (1 or B, Nk):
#: the network's own rotated attention (model/layers.py).
reference_attend = rotated_attention


def reference_ring_write(k_buf: torch.Tensor, v_buf: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int,
                         ring_start: int, window: int) -> None:
    """Store chunk ``chunk``'s keys/values (B, H, N, Dh) in ring slot ``chunk mod window`` (detached: context)."""
    n = k.shape[2]
    s = ring_start + (chunk % window) * n
    k_buf[:, :, s:s + n] = k.detach()
    v_buf[:, :, s:s + n] = v.detach()


@dataclass(frozen=True)
class Kernels:
    """One implementation of the seam's operations (see the module docstring for their contracts)."""

    name: str
    ring_attention: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = reference_ring_attention
    attend: Callable[..., torch.Tensor] = reference_attend
    ring_write: Callable[..., None] = reference_ring_write
    #: Block sublayers by name → function(block, *args); missing names run the block's own method.
    #: The ``compile`` backend puts compiled versions here (one graph per sublayer, shared by all blocks).
    sublayers: dict[str, Callable] = field(default_factory=dict)
    #: Optional: a whole layer of a chunk step, ``layer(model, layer_index, passes, commit) → bool``; it returns
    #: False when it cannot take the call, and the layer then runs sublayer by sublayer (the native backend).
    layer: Callable[..., bool] | None = None
    #: The batch sizes several characters' chunks may be run at (engine/batch.py): None, any; kernels with fixed
    #: shapes (a compiled graph per shape) take a few sizes, so a busy server compiles a few graphs, not one per
    #: number of characters speaking.
    batch_sizes: tuple[int, ...] | None = None


REFERENCE = Kernels("reference")
