"""Batched generation: the chunks of several characters denoised together, one forward per denoising step.

A server with many characters speaking at once used to run each character's chunk on its own: ten characters,
ten sets of small forwards per chunk time. Here each character's :class:`~mfruntime.engine.generator.Generator`
plans its chunk as a :class:`ChunkJob` (its starting noise, phoneme window, step schedule and stream state) and
hands it out; :func:`run_jobs` groups the jobs that can share a forward and runs each group as one batch:

* a group is the jobs with the same model, kernels, step schedule, denoised streams and phoneme presence —
  the batch's rows then take the same noise levels at every Euler step;
* each row keeps its own ring cache, chunk position, rotations, phonemes, identity and noise: the chunk step
  runs over a :class:`~mfruntime.engine.state.StateBatch` (a stacked copy of the rows' caches, made once per
  chunk), and the commit writes each row's chunk back into its own cache;
* a batch also decodes its rows' frames in one call of the video decoder, synthesises their speech in one call
  of the audio codec (each row continuing its own synthesis state) and reads their rig controls in one call of
  the rig head;
* a group of one runs exactly the single-character path (so one character alone is as fast as before).

Rows are independent: a row's output does not depend on which other rows share its batch, up to float
rounding (a batched matrix product may sum in another order; tests compare a batched character's chunks with
its solo chunks). A batch that fails marks its own jobs (``job.error``) and the other batches still run.
Kernels with fixed shapes (``compile``, ``tensorrt``: a graph per input shape) take batches of a few sizes
only (:attr:`~mfruntime.engine.kernels.Kernels.batch_sizes`): a group of 7 runs as 4 + 2 + 1. Characters join and leave between chunks, since the batch
is formed afresh for every chunk.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from mfruntime.engine.state import StreamState
from mfruntime.engine.step import chunk_step, commit, stack_states
from mfruntime.model.phonemes import PhonemeWindow
from mfruntime.model.transformer import TwinStreamTransformer
from mfruntime.sampling import euler_sample


@dataclass(eq=False)
class ChunkJob:
    """One chunk of one character, planned and waiting to be denoised and committed."""

    net: TwinStreamTransformer
    state: StreamState  # the character's streaming state (batch 1), advanced by the commit
    x: dict[str, torch.Tensor]  # per stream (1, 1, ...) starting noise; a driven stream's clean latents
    phonemes: PhonemeWindow | None  # (1, P) window of this chunk, or None (driven / idle)
    schedule: torch.Tensor  # the t grid (steps + 1,)
    generated: tuple[str, ...]  # streams being denoised; the others are clean (t = d = 0, driven audio)
    result: dict[str, torch.Tensor] | None = field(default=None)  # per stream (1, 1, ...) finished latents
    # Frames wanted: the video codec and the identity latents (1, Cv, h, w) the video stream is a residual of. A
    # batch decodes its rows' frames in one call into ``frames`` (F, H, W, 3) uint8; a job alone leaves it None
    # and its generator decodes (the single-character path, unchanged).
    codec: torch.nn.Module | None = None
    identity: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    # Speech wanted: the audio codec and this character's synthesis state; a batch synthesises its rows' PCM in one
    # call into ``pcm`` (n·hop,) (each row continuing its own state). Rig wanted: the rig head; a batch reads its
    # rows' controls in one call into ``rig`` (F, C). Alone, both stay None and the generator makes them.
    audio_codec: torch.nn.Module | None = None
    audio_state: object | None = None
    pcm: torch.Tensor | None = None
    rig_head: torch.nn.Module | None = None
    rig: torch.Tensor | None = None
    error: BaseException | None = None  # why its batch failed (then ``result`` stays None)
    seconds: float = 0.0  # its share of its batch's wall time (the batch's seconds / rows), once run

    def outcome(self) -> dict[str, torch.Tensor]:
        """The finished latents; raises the batch's error if it failed, or RuntimeError if it never ran."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError("this chunk job has not been run (engine.batch.run_jobs)")
        return self.result

    @property
    def steps(self) -> int:
        return len(self.schedule) - 1

    def group_key(self) -> tuple:
        """Jobs with equal keys can share one batch."""
        return (id(self.net), self.state.kernels.name, tuple(self.schedule.tolist()), self.generated,
                self.phonemes is None)


def _sample(net: TwinStreamTransformer, state, x: dict[str, torch.Tensor], ph: PhonemeWindow | None,
            schedule: torch.Tensor, generated: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Euler-integrate one chunk (alone or a batch of rows) and commit it (sampling.py, engine/step.py)."""
    def step_fn(xs, t, d, _cond):
        tt = {s: (t if s in generated else 0.0) for s in net.active}  # a clean stream: t = d = 0
        dd = {s: (d if s in generated else 0.0) for s in net.active}
        v = chunk_step(net, state, xs, tt, dd, ph)
        return {s: v[s] for s in generated}

    out = euler_sample(step_fn, x, schedule)
    commit(net, state, out, ph)
    return out


@dataclass(frozen=True)
class BatchRun:
    """One batch that :func:`run_jobs` ran: its rows, their step count and its wall time (denoising, commit and
    the batch's frame decoding), and whether it failed."""

    size: int
    steps: int
    seconds: float
    failed: bool = False


def _split(group: list[ChunkJob]) -> list[list[ChunkJob]]:
    """A group as the batches its kernels take: any size, or (fixed-shape kernels) the allowed sizes, largest
    first."""
    sizes = group[0].state.kernels.batch_sizes
    if sizes is None:
        return [group]
    out, rest = [], list(group)
    for size in sorted(sizes, reverse=True):
        while len(rest) >= size:
            out.append(rest[:size])
            rest = rest[size:]
    if rest:  # no size 1 among the allowed: the rest run alone
        out.extend([j] for j in rest)
    return out


def run_jobs(jobs: list[ChunkJob]) -> list[BatchRun]:
    """Denoise and commit every job, batching those that can share forwards; fills each ``job.result`` (or, if its
    batch failed, ``job.error``) and returns the batches it ran."""
    groups: dict[tuple, list[ChunkJob]] = {}
    for job in jobs:
        if job.result is not None or job.error is not None:
            raise ValueError("this chunk job has already been run")
        groups.setdefault(job.group_key(), []).append(job)
    for group in groups.values():
        if len({id(j.state) for j in group}) != len(group):
            raise ValueError("two chunk jobs of one stream state cannot run in the same batch")
    runs = []
    with torch.no_grad():
        for group in groups.values():
            for batch in _split(group):
                t0 = time.perf_counter()
                try:
                    _run_batch(batch)
                    failed = False
                except Exception as e:  # this batch's characters end their lines; the other batches still run
                    for job in batch:
                        job.result, job.error = None, e
                    failed = True
                runs.append(BatchRun(len(batch), batch[0].steps, time.perf_counter() - t0, failed))
                for job in batch:
                    job.seconds = runs[-1].seconds / len(batch)
    return runs


def _run_batch(batch: list[ChunkJob]) -> None:
    first = batch[0]
    if len(batch) == 1:  # exactly the single-character path
        first.result = _sample(first.net, first.state, first.x, first.phonemes, first.schedule, first.generated)
        return
    states = stack_states(first.net, [j.state for j in batch])
    x = {s: torch.cat([j.x[s] for j in batch]) for s in first.x}  # (B, 1, ...)
    ph = None if first.phonemes is None else PhonemeWindow.cat([j.phonemes for j in batch])  # type: ignore[misc]
    out = _sample(first.net, states, x, ph, first.schedule, first.generated)
    for i, job in enumerate(batch):
        job.result = {s: v[i:i + 1] for s, v in out.items()}
    _decode_frames(batch)
    _decode_speech(batch)
    _read_rig(batch)


def _rows_by(group: list[ChunkJob], part: str, stream: str) -> list[list[ChunkJob]]:
    """The rows of a batch that want ``part`` (a job field: a codec or the rig head) and have ``stream``'s
    latents, grouped by that part (one call each)."""
    by: dict[int, list[ChunkJob]] = {}
    for job in group:
        if getattr(job, part) is not None and job.result is not None and stream in job.result:
            by.setdefault(id(getattr(job, part)), []).append(job)
    return list(by.values())


def _video_latents(rows: list[ChunkJob]) -> torch.Tensor:
    """(B, F, Cv, h, w): each row's finished video latents, with its identity added back."""
    return torch.cat([j.net.from_residual(j.result["video"], j.identity)[:, 0] for j in rows])  # type: ignore[index]


def _decode_speech(group: list[ChunkJob]) -> None:
    """The generated speech of a batch's rows that want it, synthesised in one call per codec."""
    for rows in _rows_by(group, "audio_codec", "audio"):
        codec, zs = rows[0].audio_codec, [j.result["audio"][:, 0] for j in rows]  # type: ignore[index]
        if hasattr(codec, "decode_stream_rows"):  # the harmonic codec: one synthesis for all rows
            pcm = codec.decode_stream_rows(zs, [j.audio_state for j in rows])
        else:  # a codec without it (the STFT codec): row by row, as each generator would
            pcm = [codec.decode_stream(z, j.audio_state)[0] for z, j in zip(zs, rows)]  # type: ignore[union-attr]
        for job, p in zip(rows, pcm):
            job.pcm = p


def _read_rig(group: list[ChunkJob]) -> None:
    """The rig controls of a batch's rows that want them, read in one call per rig head (it works per row)."""
    for rows in _rows_by(group, "rig_head", "video"):
        audio = [j.result.get("audio") for j in rows]  # type: ignore[union-attr]
        lat = None if any(a is None for a in audio) else torch.cat([a[:, 0] for a in audio])  # type: ignore[index]
        controls = rows[0].rig_head.controls(_video_latents(rows), lat)  # type: ignore[union-attr]  # (B, F, C)
        for i, job in enumerate(rows):
            job.rig = controls[i]


def _decode_frames(group: list[ChunkJob]) -> None:
    """The frames of a batch's rows that want them, decoded in one call per codec (row-independent convolutions)."""
    for rows in _rows_by(group, "codec", "video"):
        z = _video_latents(rows)
        f = z.shape[1]  # (B, F, Cv, h, w)
        frames = rows[0].codec.decode(z.flatten(0, 1))  # type: ignore[union-attr]  # (B·F, H, W, 3)
        for i, job in enumerate(rows):  # (B·F, H, W, 3) → each row's F frames
            job.frames = frames[i * f:(i + 1) * f]
