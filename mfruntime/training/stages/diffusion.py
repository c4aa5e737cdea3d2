"""Diffusion stages on cached latents: uni-modal (stage 1) and joint coupling (stage 2).

Stage 1 trains an audio-only and a video-only generator with the flow-matching
loss under teacher forcing: every chunk of a window gets its own noise level
t ~ U(0, 1) and sees the clean chunks before it (docs/TRAINING.md, "Stages").
Stage 2 loads both into the twin-stream model (cross-modal attention starts at
zero) and fine-tunes on paired clips with the same loss on both streams plus a
synchronisation loss (see :class:`JointStage`).
"""
from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.func import functional_call

from mfruntime.config import MULTI_STEP_D
from mfruntime.model.phonemes import PhonemeTrack, PhonemeWindow
from mfruntime.model.transformer import TwinStreamTransformer
from mfruntime.sampling import FlowMatching
from mfruntime.training.data import ClipBank, LatentBank, window_items
from mfruntime.training.losses import LatentSync, info_nce
from mfruntime.training.stages.base import Stage

log = logging.getLogger(__name__)



#: The joint stage's synchronisation critic, saved beside its final weights so the mutual stage starts with it.
CRITIC_FILE = "critic.safetensors"


def driven_clean(t: torch.Tensor, d: torch.Tensor, drive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The audio stream of audio-driven examples (``drive`` True) is the given clean speech: it is shown at
    t = d = 0 and has no loss. Returns the audio stream's (t, d, loss weight); ``t``, ``d`` are (B,) or (B, C)
    and ``drive`` (B,)."""
    m = drive.view(-1, *[1] * (t.dim() - 1))
    zero = torch.zeros((), dtype=t.dtype)
    return torch.where(m, zero, t), torch.where(m, zero, d), (~m).to(t.dtype).expand(t.shape)


def empty_window(max_tokens: int) -> PhonemeWindow:
    z = torch.zeros(max_tokens, dtype=torch.long)
    return PhonemeWindow(z, z.clone(), torch.zeros(max_tokens, dtype=torch.float64),
                         torch.zeros(max_tokens, dtype=torch.float64), torch.zeros(max_tokens, dtype=torch.bool))


class DiffusionStage(Stage):
    streams: tuple[str, ...] = ("video", "audio")

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        cfg = self.cfg
        if self.streams == ("audio",):
            cfg = dataclasses.replace(cfg, video=None)
        elif self.streams == ("video",):
            cfg = dataclasses.replace(cfg, audio=None)
        self.net = TwinStreamTransformer(cfg)
        self.codecs: dict = {}  # frozen, not registered: not trained, not checkpointed

    @property
    def window_chunks(self) -> int:
        if self.recipe.window_chunks > 0:
            return self.recipe.window_chunks
        return int(round(self.data_recipe.window_seconds / self.cfg.media.chunk_seconds))

    def prepare(self) -> int:
        self.codecs = self.frozen_codecs()
        d = self.data_recipe
        self.bank = ClipBank(d.corpus, "train", self.cfg.video_codec.size, d.val_fraction, d.split_seed, self.progress)
        self.latents = LatentBank(self.bank, self.codecs["video"], self.codecs["audio"], d.cache, self.progress)
        self.items = window_items(self.bank, self.cfg, self.window_chunks)
        return len(self.items)

    def make_batch(self, indices, g):
        cfg, C = self.cfg, self.window_chunks
        F_, S = cfg.frames_per_chunk, cfg.latent_steps_per_chunk
        video, audio, ident, ref, windows = [], [], [], [], []
        for i in indices:
            ci, c0 = self.items[i]
            clip = self.bank.clips[ci]
            v, a = self.latents.video[ci], self.latents.audio[ci]
            video.append(v[c0 * F_:(c0 + C) * F_].reshape(C, F_, *v.shape[1:]))  # (C, F, Cv, h, w)
            audio.append(a[c0 * S:(c0 + C) * S].reshape(C, S, a.shape[-1]))  # (C, S, Ca)
            ident.append(v[int(torch.randint(len(v), (1,), generator=g))])  # a random frame of the same clip
            r = cfg.audio_ref_steps
            start = int(torch.randint(max(len(a) - r, 1), (1,), generator=g))
            ref.append(a[start:start + r])
            if clip.phonemes:
                track = PhonemeTrack.from_phonemes(clip.phonemes, -c0 * cfg.media.chunk_seconds, cfg.phonemes)
                cs = cfg.media.chunk_seconds
                windows.append(PhonemeWindow.stack([track.window(k * cs, (k + 1) * cs, cfg.phoneme_window, cfg.max_phonemes)
                                                    for k in range(C)]))
            else:
                windows.append(PhonemeWindow.stack([empty_window(cfg.max_phonemes)] * C))
        use_ref = bool(torch.rand((), generator=g) < 0.7)  # sometimes train the null speaker sink
        ident_t, video_t = torch.stack(ident), torch.stack(video)
        if "video" in self.streams:  # the video stream generates changes from the reference frame
            video_t = self.net.to_residual(video_t, ident_t)
        return {"video": video_t, "audio": torch.stack(audio), "identity": ident_t,
                "audio_ref": torch.stack(ref) if use_ref else None, "phonemes": PhonemeWindow.stack(windows)}

    def sinks(self, batch: dict) -> dict:
        identity = batch["identity"] if "video" in self.streams else None
        audio_ref = batch["audio_ref"] if "audio" in self.streams else None
        return self.net.make_sinks(identity, audio_ref, batch=batch["video"].shape[0])

    def flow_matching(self, batch: dict, g: torch.Generator) -> tuple[dict, dict, dict, dict]:
        """Teacher-forced flow matching (rectified flow, velocity target v = ε − x_0).

        L_FM = E_{t, ε} ‖ v_θ(x_t, t, d | clean chunks < c) − (ε − x_0) ‖², with x_t = (1 − t) x_0 + t ε,
        t ~ U(0, 1) per chunk and d drawn from the multi-step step sizes (MULTI_STEP_D).
        Returns (losses per stream, x_0, x_t, predicted velocity) for stages that add terms.
        """
        x0 = {s: batch[s] for s in self.streams}
        b, c = x0[self.streams[0]].shape[:2]
        t = {s: torch.rand(b, c, generator=g) for s in self.streams}
        d_choices = torch.tensor(MULTI_STEP_D)
        d = {s: d_choices[torch.randint(len(MULTI_STEP_D), (b, c), generator=g)] for s in self.streams}
        noise = {s: torch.randn(x0[s].shape, generator=g) for s in self.streams}
        drive = batch.get("drive")
        weight = {s: torch.ones(b, c) for s in self.streams}
        if drive is not None and "audio" in t:  # audio-driven examples: clean audio, no audio loss
            t["audio"], d["audio"], weight["audio"] = driven_clean(t["audio"], d["audio"], drive)
        xt = {s: FlowMatching.noisy(x0[s], noise[s], t[s]) for s in self.streams}
        v = self.net.forward_sequence(xt, t, d, batch["phonemes"], self.sinks(batch), context=x0)
        losses = {}
        for s in self.streams:
            err = (v[s] - FlowMatching.velocity_target(x0[s], noise[s])).pow(2).flatten(2).mean(-1)  # (B, C)
            losses[s] = (err * weight[s]).sum() / weight[s].sum().clamp_min(1.0)
        return losses, x0, {"xt": xt, "t": t}, v

    def forward(self, batch, g):
        losses, *_ = self.flow_matching(batch, g)
        out = {f"fm_{s}": l for s, l in losses.items()}
        out["loss"] = sum(losses.values())
        return out

    def export(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}


class AudioStage(DiffusionStage):
    """Stage 1, audio-only generator conditioned on phonemes (and a speaker reference)."""

    name = "audio"
    streams = ("audio",)


class VideoStage(DiffusionStage):
    """Stage 1, video-only generator conditioned on the identity sink (and phonemes)."""

    name = "video"
    streams = ("video",)

    def prepare(self) -> int:
        n = super().prepare()
        if self.cfg.reference_anchor:  # std of (frame − another frame of the same clip), the residual's scale
            g = torch.Generator().manual_seed(0)
            diffs = []
            for v in self.latents.video[:200]:
                i, j = torch.randint(len(v), (2, 32), generator=g)
                diffs.append(v[i] - v[j])
            scale = torch.cat(diffs).std().clamp_min(1e-3)
            self.net.anchor_scale.fill_(float(scale))
            log.info("reference anchor: residual latent std %.3f", float(scale))
        return n


class JointStage(DiffusionStage):
    """Stage 2: the twin-stream model, flow matching on both streams plus a synchronisation loss.

    Synchronisation loss (ours): a small latent-space SyncNet (:class:`LatentSync`) embeds each chunk's
    video latents and audio latents. It is trained with symmetric InfoNCE on *real* pairs — the same chunk
    is the positive, every other chunk in the batch (the same clip shifted by ±1…±11 chunks, and other
    clips) is a negative — so it learns what "in sync" looks like. The generator is scored by the same
    SyncNet with its parameters held fixed, on its own clean estimates x̂_0 = x_t − t·v̂:
        L_sync = InfoNCE(E_v(x_0^v), E_a(x_0^a)) + InfoNCE(E_v̄(x̂_0^v), E_ā(x̂_0^a)).
    The second term pushes the generated mouth and the generated speech of a chunk to agree with each
    other more than with neighbouring chunks, which is exactly an offset penalty.
    """

    name = "joint"

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        cfg = self.cfg
        vdim = cfg.frames_per_chunk * cfg.video_codec.latent_channels * cfg.video_codec.latent_size ** 2
        adim = cfg.latent_steps_per_chunk * cfg.audio_codec.latent_channels
        self.sync = LatentSync(vdim, adim)

    def make_batch(self, indices, g):
        """Windows as in stage 1; a ``drive_fraction`` of them become audio-driven examples (clean audio, no
        phonemes), so the video stream also learns to follow the audio it is given (``Session.drive``)."""
        batch = super().make_batch(indices, g)
        drive = torch.rand(len(indices), generator=g) < self.recipe.drive_fraction
        batch["drive"] = drive
        if drive.any():
            ph = batch["phonemes"]
            ph.mask = ph.mask & ~drive[:, None, None]
        return batch

    def load_init(self, stage: str, weights: dict[str, torch.Tensor]) -> None:
        if stage not in ("audio", "video", "joint"):
            super().load_init(stage, weights)
        missing, unexpected = self.net.load_state_dict(weights, strict=False)
        if unexpected:
            raise ValueError(f"weights of stage {stage} do not fit the joint model: unexpected {unexpected[:5]}")

    def finalize(self) -> None:
        """Keep the (EMA) sync critic beside the stage's weights: the mutual stage starts with it."""
        out = self.run_root / self.name / CRITIC_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.sync.state_dict().items()}, str(out))

    def sync_loss(self, x0: dict, x0_hat: dict) -> tuple[torch.Tensor, torch.Tensor]:
        tau = self.recipe.sync_temperature
        ev, ea = self.sync(x0["video"], x0["audio"])
        real = info_nce(ev, ea, tau)
        frozen = {k: v.detach() for k, v in self.sync.named_parameters()}
        gv, ga = functional_call(self.sync, frozen, (x0_hat["video"], x0_hat["audio"]))
        return real, info_nce(gv, ga, tau)

    def forward(self, batch, g):
        losses, x0, noisy, v = self.flow_matching(batch, g)
        x0_hat = {s: FlowMatching.x0_from_velocity(noisy["xt"][s], v[s], noisy["t"][s]) for s in self.streams}
        sync_real, sync_gen = self.sync_loss(x0, x0_hat)
        loss = sum(losses.values()) + self.recipe.sync_weight * (sync_real + sync_gen)
        return {"loss": loss, **{f"fm_{s}": l for s, l in losses.items()}, "sync_real": sync_real, "sync_gen": sync_gen}

