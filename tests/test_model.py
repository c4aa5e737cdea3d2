"""The twin-stream transformer: cache equivalence, causality, ring wrap-around, uni-modal → joint."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mfruntime.engine.step import chunk_step, commit, new_state
from mfruntime.model.phonemes import PhonemeTrack, PhonemeWindow
from mfruntime.model.transformer import TwinStreamTransformer
from tests.model_helpers import micro_config, random_latents, randomize, sample_phonemes, windows

B, C = 2, 5


def _model(**kw) -> TwinStreamTransformer:
    torch.manual_seed(0)
    m = TwinStreamTransformer(micro_config(**kw)).eval()
    randomize(m)
    return m


def _sinks(m: TwinStreamTransformer, batch: int = B):
    cfg = m.cfg
    identity = torch.randn(batch, cfg.video_codec.latent_channels, cfg.video_codec.latent_size, cfg.video_codec.latent_size) if "video" in m.active else None
    return m.make_sinks(identity, None, batch=batch)


def _batched_windows(cfg, chunks: int) -> list[PhonemeWindow]:
    """One (B, P) window per chunk, the same for every batch element."""
    return [PhonemeWindow.stack([w] * B) for w in windows(cfg, chunks)]


def _stream(m, sinks, x, t, d, ph, clean):
    """Chunk by chunk against the cache: denoise-step output for x, then commit the clean chunk."""
    state = new_state(m, sinks, B)
    outs = []
    for c in range(C):
        xc = {s: v[:, c:c + 1] for s, v in x.items()}
        outs.append(chunk_step(m, state, xc, {s: t[s][:, c] for s in t}, {s: d[s][:, c] for s in d}, ph[c]))
        commit(m, state, {s: v[:, c:c + 1] for s, v in clean.items()}, ph[c])
    return {s: torch.cat([o[s] for o in outs], dim=1) for s in m.active}, state


@pytest.mark.parametrize("streams", [{"video": True, "audio": True}, {"audio": False}, {"video": False}])
def test_cache_equals_full_forward(streams):
    """Chunk-by-chunk with the ring cache (which wraps: C=5 > W=3) equals one forward with the block-causal mask."""
    m = _model(**streams)
    sinks = _sinks(m)
    x, clean = random_latents(m, B, C, seed=1), random_latents(m, B, C, seed=2)
    t = {s: torch.rand(B, C) for s in m.active}
    d = {s: torch.full((B, C), 0.25) for s in m.active}
    ph = _batched_windows(m.cfg, C)
    ph_seq = PhonemeWindow.stack(ph, dim=1)  # (B, C, P)
    with torch.no_grad():
        streamed, state = _stream(m, sinks, x, t, d, ph, clean)
        full = m.forward_sequence(x, t, d, ph_seq, sinks, context=clean)  # teacher forcing
        plain_stream, _ = _stream(m, sinks, clean, {s: torch.zeros(B, C) for s in t}, {s: torch.zeros(B, C) for s in d}, ph, clean)
        plain_full = m.forward_sequence(clean, {s: 0.0 for s in t}, {s: 0.0 for s in d}, ph_seq, sinks)
    assert sorted(state.caches[m.active[0]].slot_chunk.tolist()) == [2, 3, 4]  # the ring wrapped
    for s in m.active:
        assert streamed[s].shape == x[s].shape
        assert (streamed[s] - full[s]).abs().max() <= 1e-5, s
        assert (plain_stream[s] - plain_full[s]).abs().max() <= 1e-5, s
        assert streamed[s].abs().mean() > 0.05  # non-trivial outputs


def test_ring_window_is_what_the_model_sees():
    """After wrap-around the result equals a recompute over sink + last W chunks, and differs from a longer window."""
    m = _model()
    sinks = _sinks(m)
    x, clean = random_latents(m, B, C, seed=3), random_latents(m, B, C, seed=4)
    t = {s: torch.full((B, C), 0.7) for s in m.active}
    d = {s: torch.full((B, C), 0.1) for s in m.active}
    ph = _batched_windows(m.cfg, C)
    with torch.no_grad():
        streamed, _ = _stream(m, sinks, x, t, d, ph, clean)
        windowed = m.forward_sequence(x, t, d, PhonemeWindow.stack(ph, 1), sinks, context=clean)
        m.cfg = micro_config(window=C)  # a window long enough to never wrap
        longer = m.forward_sequence(x, t, d, PhonemeWindow.stack(ph, 1), sinks, context=clean)
    for s in m.active:
        assert (streamed[s][:, -1] - windowed[s][:, -1]).abs().max() <= 1e-5
        assert (streamed[s][:, -1] - longer[s][:, -1]).abs().max() > 1e-3  # chunk 0 is really out of view


def test_gradient_causality():
    """Output of chunk k has exactly zero gradient w.r.t. inputs of chunks > k, in both streams and across them."""
    m = _model()
    with torch.no_grad():
        sinks = _sinks(m)
    ph = PhonemeWindow.stack(_batched_windows(m.cfg, C), 1)
    x = {s: v.requires_grad_() for s, v in random_latents(m, B, C, seed=5).items()}
    ctx = {s: v.requires_grad_() for s, v in random_latents(m, B, C, seed=6).items()}
    t = {s: torch.full((B, C), 0.5) for s in m.active}
    d = {s: torch.full((B, C), 0.25) for s in m.active}
    k = 2
    for context in (None, ctx):
        out = m.forward_sequence(x, t, d, ph, sinks, context=context)
        for s_out in m.active:
            inputs = list(x.values()) + (list(ctx.values()) if context is not None else [])
            grads = torch.autograd.grad(out[s_out][:, k].sum(), inputs, allow_unused=True, retain_graph=True)
            for name, g in zip(list(x) + (["ctx_" + s for s in ctx] if context is not None else []), grads):
                if name.startswith("ctx_"):
                    assert g[:, k:].abs().max() == 0, (s_out, name)  # noisy chunk k never sees clean chunk >= k
                    assert g[:, :k].abs().max() > 0
                else:
                    assert g[:, k + 1:].abs().max() == 0, (s_out, name)
                    assert g[:, k].abs().max() > 0


def test_unimodal_weights_load_into_joint_model():
    """Zero-initialised cross-modal attention: a uni-modal model's outputs are unchanged inside the joint model."""
    for keep in ("video", "audio"):
        uni = _model(**{("audio" if keep == "video" else "video"): False})
        torch.manual_seed(1)
        joint = TwinStreamTransformer(micro_config())
        randomize(joint, seed=9, skip=("x_out",))  # everything random except the fresh zero cross-modal output
        missing, unexpected = joint.load_state_dict(uni.state_dict(), strict=False)
        other = "audio" if keep == "video" else "video"
        assert not unexpected and all(("x_q" in k or "x_out" in k or "norm_x" in k or k.startswith(f"streams.{other}")
                                       or (other == "video" and k == "anchor_scale")) for k in missing)
        x = random_latents(joint, B, 3, seed=7)
        t = {s: torch.full((B, 3), 0.6) for s in joint.active}
        d = {s: torch.full((B, 3), 0.2) for s in joint.active}
        ph = PhonemeWindow.stack([PhonemeWindow.stack([w] * B) for w in windows(joint.cfg, 3)], 1)
        with torch.no_grad():
            identity = torch.randn(B, 4, 8, 8)
            out_joint = joint.forward_sequence(x, t, d, ph, joint.make_sinks(identity, None, B))
            out_uni = uni.forward_sequence({keep: x[keep]}, {keep: t[keep]}, {keep: d[keep]}, ph,
                                           uni.make_sinks(identity if keep == "video" else None, None, B))
        assert (out_joint[keep] - out_uni[keep]).abs().max() <= 1e-6


def test_cost_is_constant_in_stream_length():
    """The cache has static shapes: the keys attended per chunk are the same at chunk 2 and chunk 40."""
    m = _model()
    sinks = _sinks(m, 1)
    state = new_state(m, sinks, 1)
    shapes = []
    for c in range(40):
        x = random_latents(m, 1, 1, seed=c)
        with torch.no_grad():
            commit(m, state, x, None)
        shapes.append({s: tuple(r.k.shape) for s, r in state.caches.items()})
    assert all(sh == shapes[0] for sh in shapes)


def test_bad_inputs_say_what_was_expected():
    m = _model()
    sinks = _sinks(m)
    good = random_latents(m, B, 2, seed=0)
    t = {s: 0.5 for s in m.active}
    with pytest.raises(ValueError, match=r"x\['video'\] must be \(B, C, 4, 4, 8, 8\)"):
        m.forward_sequence({**good, "video": torch.randn(B, 2, 4, 4, 8)}, t, t, None, sinks)
    with pytest.raises(ValueError, match="float tensor"):
        m.forward_sequence({**good, "audio": good["audio"].long()}, t, t, None, sinks)
    with pytest.raises(ValueError, match="exactly the streams"):
        m.forward_sequence({"video": good["video"]}, t, t, None, sinks)
    with pytest.raises(ValueError, match="same batch and chunk count"):
        m.forward_sequence({**good, "audio": good["audio"][:1]}, t, t, None, sinks)
    with pytest.raises(ValueError, match="t and d must be"):
        m.forward_sequence(good, {s: torch.zeros(3) for s in m.active}, t, None, sinks)
    with pytest.raises(ValueError, match="identity latent must be"):
        m.make_sinks(torch.randn(B, 3, 8, 8), None, B)
    with pytest.raises(ValueError, match="phoneme list is empty"):
        PhonemeTrack.from_phonemes([])
    track = PhonemeTrack.from_phonemes(sample_phonemes())
    with pytest.raises(ValueError, match="max_phonemes"):
        track.window(0.0, 1.0, 0.3, max_tokens=4)


def test_reference_anchor_residual_round_trip():
    """With the anchor the video stream models (z − z_ref) / anchor_scale: the two maps invert each other, a zero
    sample is the reference latent itself, and without the anchor both are the identity."""
    m = _model()
    m.anchor_scale.fill_(0.25)
    z = torch.randn(B, 2, 4, 4, 8, 8)
    ref = torch.randn(B, 4, 8, 8)
    x = m.to_residual(z, ref)
    assert torch.allclose(x, (z - ref[:, None, None]) / 0.25)
    assert torch.allclose(m.from_residual(x, ref), z, atol=1e-6)
    assert torch.equal(m.from_residual(torch.zeros_like(z), ref), ref[:, None, None].expand_as(z))
    plain = TwinStreamTransformer(dataclasses.replace(micro_config(), reference_anchor=False))
    assert torch.equal(plain.to_residual(z, ref), z) and not hasattr(plain, "anchor_scale")
