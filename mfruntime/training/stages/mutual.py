"""Mutual Forcing (arXiv 2604.25819): the multi-step mode teaches the few-step mode, no external teacher.

One training step over a window of R chunks, chunk by chunk, exactly as at inference
(the same ``chunk_step``/``commit`` over the KV ring cache that generation uses):

  1. Few-step rollout. Draw n from the few-step counts (e.g. 1, 2, 4) and noise ε_k; integrate
     x ← x − d_i · v_θ(x, t_i, d_i | cache) over the uniform n-step grid, with the cache holding the
     model's *own* previous few-step outputs. Gradient flows only through the last n − j steps for a
     random j (truncated backpropagation, as in Self Forcing); earlier steps run without gradient.
     ε_k is drawn at the inference temperatures (``GenerationOptions``: the starting noise scaled per
     stream), so the few-step mode is taught from exactly the noise it starts from when it runs live.
  2. Multi-step target. The same weights integrate the same ε_k over a teacher_steps grid (small d),
     from the same self-generated cache, without gradient: x̃_0.
     Distillation:  L_D = ‖ x̂_0^few − sg(x̃_0^multi) ‖².
  3. Flow matching on the real chunk x_0 with the self-generated cache as context, so the multi-step
     mode learns on inference-time history:  L_FM = ‖ v_θ(x_t, t, d | cache) − (ε′ − x_0) ‖²,
     t ~ U(0, 1), d ∈ MULTI_STEP_D.
  4. Optional shortcut self-consistency (Frans et al. 2024, eq. 5): one step of size 2d equals two
     steps of size d:  L_SC = ‖ v_θ(x_t, t, 2d) − sg(½[v_θ(x_t, t, d) + v_θ(x_{t−d}, t − d, d)]) ‖².
  5. Commit x̂_0^few (detached) to the cache and move to the next chunk.

  Audio-driven examples (a ``drive_fraction`` of the windows, as in the joint stage): the audio stream is the
  real speech at t = 0 throughout (no phonemes, no audio loss), so the few-step face learns to follow given
  speech too.

  L = w_D · L_D + w_FM · L_FM + w_SC · L_SC (+ the synchronisation loss of stage 2), averaged over chunks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mfruntime.engine.generator import GenerationOptions
from mfruntime.engine.state import StreamState
from mfruntime.engine.step import chunk_step, commit, new_state
from mfruntime.model.phonemes import PhonemeWindow
from mfruntime.sampling import FlowMatching, euler_sample, uniform_schedule
from mfruntime.training.stages.diffusion import MULTI_STEP_D, JointStage


def _window(ph: PhonemeWindow, k: int) -> PhonemeWindow:
    """Chunk k of batched windows (B, C, P) → (B, P)."""
    return PhonemeWindow(ph.ids[:, k], ph.stressed[:, k], ph.start[:, k], ph.end[:, k], ph.mask[:, k])


class MutualStage(JointStage):
    name = "mutual"

    @property
    def window_chunks(self) -> int:
        return self.recipe.rollout_chunks

    def load_init(self, stage: str, weights: dict[str, torch.Tensor]) -> None:
        if stage not in ("joint", "mutual"):
            super().load_init(stage, weights)
        self.net.load_state_dict(weights, strict=True)

    def rollout_noise(self, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Starting noise of one chunk's rollouts, scaled by the default inference temperature of each stream."""
        options = GenerationOptions()
        return {s: options.temperature(s) * torch.randn((b, *self.net.latent_shape(s, 1)), generator=g)
                for s in self.streams}

    def _step_fn(self, state: StreamState, ph: PhonemeWindow, drive: torch.Tensor | None):
        """The chunk step as a sampler step function. For audio-driven examples (``drive`` (B,) True) the audio
        stream is the given clean latents: it is shown at t = d = 0 and its velocity is zero, so it stays put."""
        def fn(x, t, d, _cond):
            tt, dd = {s: t for s in x}, {s: d for s in x}
            if drive is not None:
                tt["audio"] = torch.where(drive, 0.0, torch.full(drive.shape, float(t)))
                dd["audio"] = torch.where(drive, 0.0, torch.full(drive.shape, float(d)))
            v = chunk_step(self.net, state, x, tt, dd, ph)
            if drive is not None:
                v = {**v, "audio": v["audio"] * (~drive).float().view(-1, *[1] * (v["audio"].dim() - 1))}
            return v
        return fn

    def forward(self, batch, g):
        r = self.recipe
        net, streams = self.net, self.streams
        b, chunks = batch["video"].shape[:2]
        sinks = net.make_sinks(batch["identity"], batch["audio_ref"], batch=b)
        state = new_state(net, sinks, b)  # the cache keeps detached context, as in Self Forcing
        n = r.few_steps[int(torch.randint(len(r.few_steps), (1,), generator=g))]
        few_grid, teacher_grid = uniform_schedule(n), uniform_schedule(r.teacher_steps)
        d_choices = torch.tensor(MULTI_STEP_D)
        l_d = l_fm = l_sc = torch.zeros(())
        produced: dict[str, list[torch.Tensor]] = {s: [] for s in streams}
        drive = batch.get("drive")  # audio-driven examples (their phonemes are already masked)
        drive = drive if drive is not None and bool(drive.any()) and "audio" in streams else None
        for k in range(chunks):
            ph = _window(batch["phonemes"], k)
            step = self._step_fn(state, ph, drive)
            noise = self.rollout_noise(b, g)
            if drive is not None:  # the given speech instead of noise: it is the context the face follows
                real = batch["audio"][:, k:k + 1]
                noise["audio"] = torch.where(drive.view(-1, 1, 1, 1), real, noise["audio"])
            # 1. few-step rollout on self-generated context; gradient through the last n − j steps.
            j = int(torch.randint(n, (1,), generator=g))
            x = noise
            if j > 0:
                with torch.no_grad():
                    x = euler_sample(step, noise, few_grid[: j + 1])
            x_few = euler_sample(step, x, few_grid[j:])
            # 2. multi-step target from the same noise and the same context.
            with torch.no_grad():
                x_teacher = euler_sample(step, noise, teacher_grid)
            l_d = l_d + sum(F.mse_loss(x_few[s], x_teacher[s]) for s in streams)
            # 3. flow matching on the real chunk with the self-generated cache as context.
            x0 = {s: batch[s][:, k:k + 1] for s in streams}
            t = torch.rand(b, generator=g)
            d = d_choices[torch.randint(len(MULTI_STEP_D), (b,), generator=g)]
            eps = {s: torch.randn(x0[s].shape, generator=g) for s in streams}
            ts, ds = {s: t for s in streams}, {s: d for s in streams}
            weight = {s: torch.ones(b) for s in streams}
            if drive is not None:  # driven audio is clean input (t = 0) and has no loss
                ts["audio"] = torch.where(drive, torch.zeros_like(t), t)
                ds["audio"] = torch.where(drive, torch.zeros_like(d), d)
                weight["audio"] = (~drive).float()
            xt = {s: FlowMatching.noisy(x0[s], eps[s], ts[s][:, None]) for s in streams}
            v = chunk_step(net, state, xt, ts, ds, ph)
            for s in streams:
                err = (v[s] - FlowMatching.velocity_target(x0[s], eps[s])).pow(2).flatten(1).mean(1)  # (B,)
                l_fm = l_fm + (err * weight[s]).sum() / weight[s].sum().clamp_min(1.0)
            # 4. shortcut self-consistency: one 2d step vs two d steps (targets without gradient).
            if r.shortcut_weight > 0:
                l_sc = l_sc + self._shortcut(state, ph, xt, t, g)
            for s in streams:
                produced[s].append(x_few[s])
            # 5. the few-step output becomes context for the next chunk.
            with torch.no_grad():
                commit(net, state, {s: x_few[s].detach() for s in streams}, ph)
        loss = (r.distill_weight * l_d + r.fm_weight * l_fm + r.shortcut_weight * l_sc) / chunks
        out = {"distill": l_d / chunks, "fm": l_fm / chunks}
        if r.shortcut_weight > 0:
            out["shortcut"] = l_sc / chunks
        if r.sync_weight > 0:
            real = {s: batch[s] for s in streams}
            gen = {s: torch.cat(produced[s], dim=1) for s in streams}
            sync_real, sync_gen = self.sync_loss(real, gen)
            loss = loss + r.sync_weight * (sync_real + sync_gen)
            out.update(sync_real=sync_real, sync_gen=sync_gen)
        out["loss"] = loss
        return out

    def _shortcut(self, state: StreamState, ph: PhonemeWindow, xt: dict, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        net, streams = self.net, self.streams
        d = torch.tensor([0.0625, 0.125, 0.25])[torch.randint(3, t.shape, generator=g)]
        d = torch.minimum(d, t / 2)
        with torch.no_grad():
            v1 = chunk_step(net, state, xt, {s: t for s in streams}, {s: d for s in streams}, ph)
            x_mid = {s: xt[s] - d.view(-1, *[1] * (xt[s].dim() - 1)) * v1[s] for s in streams}
            v2 = chunk_step(net, state, x_mid, {s: t - d for s in streams}, {s: d for s in streams}, ph)
        v_big = chunk_step(net, state, xt, {s: t for s in streams}, {s: 2 * d for s in streams}, ph)
        return sum(F.mse_loss(v_big[s], 0.5 * (v1[s] + v2[s])) for s in streams)
