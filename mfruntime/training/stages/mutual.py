"""Mutual Forcing (arXiv 2604.25819): the multi-step mode teaches the few-step mode, no external teacher.

One training step over a window of R chunks, chunk by chunk, exactly as at inference
(the same ``chunk_step``/``commit`` over the KV ring cache that generation uses):

  1. Few-step rollout. Draw n from the few-step counts (e.g. 1, 2, 4) and noise ε_k; integrate
     x ← x − d_i · v_θ(x, t_i, d_i | cache) over the uniform n-step grid, with the cache holding the
     model's *own* previous few-step outputs. Gradient flows only through the last n − j steps for a
     random j (truncated backpropagation, as in Self Forcing); earlier steps run without gradient.
     ε_k is drawn at the inference temperatures (``GenerationOptions``: the starting noise scaled per
     stream), so the few-step mode is taught from exactly the noise it starts from when it runs live.
  2. Multi-step target. The teacher integrates the same ε_k over a teacher_steps grid (small d), without
     gradient, from the same self-generated history (its own ring cache, fed the student's few-step
     chunks): x̃_0. The teacher is the model itself (no external model), held slow so the target does not
     move with every update (recipe ``teacher``): the exponential moving average of the student's weights
     θ̄ ← λ θ̄ + (1 − λ) θ ("ema", decay λ = ``teacher_decay``), the weights the stage started from ("frozen",
     the limit λ → 1), or the student's current weights θ ("self").
     Distillation:  L_D = ‖ x̂_0^few − sg(x̃_0^multi) ‖².
  3. Flow matching on the real chunk x_0, so the multi-step mode stays anchored to data:
     L_FM = ‖ v_θ(x_t, t, d | history) − (ε′ − x_0) ‖², t ~ U(0, 1), d ∈ MULTI_STEP_D, with the history the
     self-generated cache (``fm_history = "generated"``, as at inference), the real chunks before it
     (teacher forcing, "real"), or the mean of both ("both").
  4. Optional shortcut self-consistency (Frans et al. 2024, eq. 5): one step of size 2d equals two
     steps of size d:  L_SC = ‖ v_θ(x_t, t, 2d) − sg(½[v_θ(x_t, t, d) + v_θ(x_{t−d}, t − d, d)]) ‖².
  5. Commit x̂_0^few (detached) to the student's and the teacher's caches and move to the next chunk.

  Audio-driven examples (a ``drive_fraction`` of the windows, as in the joint stage): the audio stream is the
  real speech at t = 0 throughout (no phonemes, no audio loss), so the few-step face learns to follow given
  speech too.

  L = w_D · L_D + w_FM · L_FM + w_SC · L_SC (+ the synchronisation loss of stage 2), averaged over chunks.
  The sync critic comes from the joint stage (its ``critic.safetensors``); without one it is trained on real
  pairs first (``critic_steps``), before its gradient reaches the generator.
"""
from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mfruntime.config import MULTI_STEP_D
from mfruntime.engine.generator import GenerationOptions
from mfruntime.engine.state import StreamState
from mfruntime.engine.step import chunk_step, commit, new_state
from mfruntime.model.phonemes import PhonemeWindow
from mfruntime.model.transformer import TwinStreamTransformer
from mfruntime.sampling import FlowMatching, euler_sample, uniform_schedule
from mfruntime.training.losses import info_nce
from mfruntime.training.stages.diffusion import CRITIC_FILE, JointStage, driven_clean

log = logging.getLogger(__name__)


def _window(ph: PhonemeWindow, k: int) -> PhonemeWindow:
    """Chunk k of batched windows (B, C, P) → (B, P)."""
    return PhonemeWindow(ph.ids[:, k], ph.stressed[:, k], ph.start[:, k], ph.end[:, k], ph.mask[:, k])


class MutualStage(JointStage):
    name = "mutual"

    def __init__(self, cfg, recipe, *args, **kw) -> None:
        if not cfg.step_conditioning:
            raise ValueError("the mutual stage trains the few-step modes through the step size d, but this recipe's "
                             "[model] sets step_conditioning = false (the plain multi-step baseline): remove that "
                             "line, or train the baseline's stages only (audio, video, joint)")
        if recipe.few_step_d:  # the few-step sizes are trained here: the network (and the export) sees them
            cfg = dataclasses.replace(cfg, max_step_size=1.0)
        super().__init__(cfg, recipe, *args, **kw)
        # The slow teacher (step 2): a second copy of the network, never trained by the optimiser; saved in
        # checkpoints with the student, so a resumed run continues from the same teacher.
        self.teacher: TwinStreamTransformer | None = None
        if self.recipe.teacher != "self":
            self.teacher = TwinStreamTransformer(self.net.cfg).requires_grad_(False)
            self.teacher.load_state_dict(self.net.state_dict())  # the teacher is the model itself; load_init keeps it so
        self.critic_from_joint = False

    @property
    def window_chunks(self) -> int:
        return self.recipe.rollout_chunks

    def load_init(self, stage: str, weights: dict[str, torch.Tensor]) -> None:
        if stage not in ("joint", "mutual"):
            super().load_init(stage, weights)
        self.net.load_state_dict(weights, strict=True)
        if self.teacher is not None:
            self.teacher.load_state_dict(weights, strict=True)
        critic = self.run_root / stage / CRITIC_FILE
        if critic.is_file():
            self.sync.load_state_dict(load_file(str(critic)))
            self.critic_from_joint = True
            log.info("sync critic carried over from %s", critic)

    def prepare(self) -> int:
        n = super().prepare()
        if not self.critic_from_joint and self.recipe.sync_weight > 0 and self.recipe.critic_steps > 0:
            self.train_critic(self.recipe.critic_steps)
        return n

    def train_critic(self, steps: int, batch: int = 16) -> None:
        """Train the sync critic alone on real pairs (InfoNCE, as in the joint stage) before the generator sees
        its gradient: a randomly initialised critic would score the generator by noise. Deterministic (its own
        seeded generator); a resumed run overwrites it with the checkpoint's critic anyway."""
        g = torch.Generator().manual_seed(self.recipe.seed + 7919)
        opt = torch.optim.AdamW(self.sync.parameters(), lr=1e-3)
        first = last = float("nan")
        for i in range(steps):
            idx = torch.randint(len(self.items), (batch,), generator=g).tolist()
            b = self.make_batch(idx, g)  # real windows
            ev, ea = self.sync(b["video"], b["audio"])
            loss = info_nce(ev, ea, self.recipe.sync_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = float(loss.detach())
            first = last if i == 0 else first
        log.info("sync critic trained on real pairs: %d steps, InfoNCE %.3f → %.3f", steps, first, last)

    def untracked(self, key: str) -> bool:
        return key.startswith("teacher.")  # moved by after_step, not by the optimiser: no EMA of it

    def after_step(self, step: int) -> None:
        """Step 2's slow teacher follows the student: θ̄ ← λ θ̄ + (1 − λ) θ ("ema"); "frozen" keeps its weights."""
        if self.teacher is None or self.recipe.teacher != "ema":
            return
        lam = self.recipe.teacher_decay
        with torch.no_grad():
            student = self.net.state_dict()
            for k, v in self.teacher.state_dict().items():
                if v.is_floating_point():
                    v.lerp_(student[k], 1.0 - lam)
                else:
                    v.copy_(student[k])

    def rollout_noise(self, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Starting noise of one chunk's rollouts, scaled by the default inference temperature of each stream."""
        options = GenerationOptions()
        return {s: options.temperature(s) * torch.randn((b, *self.net.latent_shape(s, 1)), generator=g)
                for s in self.streams}

    @staticmethod
    def _step_fn(net: TwinStreamTransformer, state: StreamState, ph: PhonemeWindow, drive: torch.Tensor | None):
        """The chunk step of ``net`` over ``state`` as a sampler step function. For audio-driven examples
        (``drive`` (B,) True) the audio stream is the given clean latents: t = d = 0 and zero velocity."""
        def fn(x, t, d, _cond):
            tt, dd = {s: t for s in x}, {s: d for s in x}
            if drive is not None:
                tt["audio"], dd["audio"], _ = driven_clean(torch.full(drive.shape, float(t)),
                                                          torch.full(drive.shape, float(d)), drive)
            v = chunk_step(net, state, x, tt, dd, ph)
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
        teacher, t_state = net, state  # "self": the student's own weights and cache
        if self.teacher is not None:
            teacher = self.teacher
            with torch.no_grad():
                t_state = new_state(teacher, teacher.make_sinks(batch["identity"], batch["audio_ref"], batch=b), b)
        n = r.few_steps[int(torch.randint(len(r.few_steps), (1,), generator=g))]
        few_grid, teacher_grid = uniform_schedule(n), uniform_schedule(r.teacher_steps)
        d_choices = torch.tensor(MULTI_STEP_D)
        l_d = l_fm = l_sc = torch.zeros(())
        produced: dict[str, list[torch.Tensor]] = {s: [] for s in streams}
        drive = batch.get("drive")  # audio-driven examples (their phonemes are already masked)
        drive = drive if drive is not None and bool(drive.any()) and "audio" in streams else None
        for k in range(chunks):
            ph = _window(batch["phonemes"], k)
            step = self._step_fn(net, state, ph, drive)
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
            # 2. multi-step target from the same noise and the same history, by the slow teacher.
            with torch.no_grad():
                x_teacher = euler_sample(self._step_fn(teacher, t_state, ph, drive), noise, teacher_grid)
            l_d = l_d + sum(F.mse_loss(x_few[s], x_teacher[s]) for s in streams)
            # 3. flow matching on the real chunk (here with the self-generated cache as its history).
            if r.fm_history != "real":
                l_fm = l_fm + self._generated_history_fm(state, ph, batch, k, drive, d_choices, g)
            # 4. shortcut self-consistency: one 2d step vs two d steps (targets without gradient).
            if r.shortcut_weight > 0:
                t_sc = torch.rand(b, generator=g)
                x0 = {s: batch[s][:, k:k + 1] for s in streams}
                xt = {s: FlowMatching.noisy(x0[s], torch.randn(x0[s].shape, generator=g), t_sc[:, None]) for s in streams}
                l_sc = l_sc + self._shortcut(state, ph, xt, t_sc, g)
            for s in streams:
                produced[s].append(x_few[s])
            # 5. the few-step output becomes context for the next chunk, in both caches.
            with torch.no_grad():
                done = {s: x_few[s].detach() for s in streams}
                commit(net, state, done, ph)
                if t_state is not state:
                    commit(teacher, t_state, done, ph)
        l_fm = l_fm / chunks
        if r.fm_history != "generated":  # teacher forcing on the real window (the joint stage's term)
            real_fm = sum(self.flow_matching(batch, g)[0].values())
            l_fm = real_fm if r.fm_history == "real" else 0.5 * (l_fm + real_fm)
        loss = (r.distill_weight * l_d + r.shortcut_weight * l_sc) / chunks + r.fm_weight * l_fm
        out = {"distill": l_d / chunks, "fm": l_fm}
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

    def _generated_history_fm(self, state: StreamState, ph: PhonemeWindow, batch: dict, k: int,
                              drive: torch.Tensor | None, d_choices: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Step 3 on chunk k: L_FM with the self-generated cache as the history (summed over streams)."""
        streams = self.streams
        x0 = {s: batch[s][:, k:k + 1] for s in streams}
        b = x0[streams[0]].shape[0]
        t = torch.rand(b, generator=g)
        d = d_choices[torch.randint(len(d_choices), (b,), generator=g)]
        eps = {s: torch.randn(x0[s].shape, generator=g) for s in streams}
        ts, ds = {s: t for s in streams}, {s: d for s in streams}
        weight = {s: torch.ones(b) for s in streams}
        if drive is not None:
            ts["audio"], ds["audio"], weight["audio"] = driven_clean(t, d, drive)
        xt = {s: FlowMatching.noisy(x0[s], eps[s], ts[s][:, None]) for s in streams}
        v = chunk_step(self.net, state, xt, ts, ds, ph)
        total = torch.zeros(())
        for s in streams:
            err = (v[s] - FlowMatching.velocity_target(x0[s], eps[s])).pow(2).flatten(1).mean(1)  # (B,)
            total = total + (err * weight[s]).sum() / weight[s].sum().clamp_min(1.0)
        return total

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
