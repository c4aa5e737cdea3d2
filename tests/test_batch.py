"""Batched generation (engine/batch.py): characters that share forwards get the chunks they would get alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.engine import native
from mfruntime.engine.backends import kernels_for
from mfruntime.engine.batch import ChunkJob, run_jobs
from mfruntime.engine.generator import GenerationOptions, Generator
from mfruntime.engine.utterance import Utterance
from mfruntime.model.av import AVModel
from tests.model_helpers import micro_config, randomize, sample_phonemes

BACKENDS = ["eager"] + (["native"] if native.available() else [])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = AVModel(micro_config()).eval()
    randomize(m, std=0.05)
    return m


def _face(seed: int) -> np.ndarray:
    return FaceRenderer(Identity.from_seed(seed), 64).render(FaceState())


def _plans(model) -> list[tuple[Utterance, int]]:
    """(utterance, steps) per character: different lengths, a driven one, one at other steps."""
    media = model.cfg.media
    ph = sample_phonemes()
    late = [type(p)(p.symbol, p.start + 0.05, p.end + 0.05, p.stressed) for p in ph]
    speech = np.sin(np.linspace(0, 400, 4 * media.samples_per_chunk)).astype(np.float32) * 0.3
    return [(Utterance.speech(ph, media), 2), (Utterance.speech(late[:9], media), 2),
            (Utterance.drive(speech, media), 2), (Utterance.speech(ph, media, chunks=5), 1),
            (Utterance.speech(late, media), 2)]


def _generators(model, backend: str, warmup: list[int]) -> list[Generator]:
    """One generator per character, each with its own face and seed, some already ``warmup`` chunks into
    their stream (so the batch mixes chunk positions and filled/empty ring slots)."""
    gens = []
    for i, n in enumerate(warmup):
        g = Generator(model, _face(10 + i), options=GenerationOptions(steps=2, seed=i), kernels=kernels_for(backend))
        if n:
            list(g.generate(sample_phonemes(), n_chunks=n))
        gens.append(g)
    return gens


def _lockstep(iters) -> list[list]:
    """Advance batched generators together: every round, one job from each live character, run as one call."""
    outs: list[list] = [[] for _ in iters]
    live = list(range(len(iters)))
    while live:
        jobs = []
        for i in list(live):
            item = next(iters[i], None)
            if item is None:
                live.remove(i)
            else:
                assert isinstance(item, ChunkJob)
                jobs.append((i, item))
        run_jobs([j for _, j in jobs])
        for i, _ in jobs:
            outs[i].append(next(iters[i]))
    return outs


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_chunks_equal_solo_chunks(model, backend):
    warmup = [0, 3, 1, 0, 12]  # chunk 12 has wrapped the 3-slot ring
    plans = _plans(model)
    solo = [list(g.run(u, steps)) for g, (u, steps) in zip(_generators(model, backend, warmup), plans)]
    gens = _generators(model, backend, warmup)
    batched = _lockstep([g.run(u, steps, batched=True) for g, (u, steps) in zip(gens, plans)])
    for a, b in zip(solo, batched):
        assert [c.index for c in a] == [c.index for c in b] and len(a) >= 1
        for ca, cb in zip(a, b):
            assert ca.steps == cb.steps
            for s in ca.latents:
                torch.testing.assert_close(cb.latents[s], ca.latents[s], atol=2e-4, rtol=1e-4)
            assert np.abs(ca.frames.astype(int) - cb.frames.astype(int)).max() <= 1
            np.testing.assert_allclose(cb.pcm, ca.pcm, atol=2e-4)  # synthesised with the batch's other rows
            assert (ca.rig is None) == (cb.rig is None)
            if ca.rig is not None:  # read with the batch's other rows
                np.testing.assert_allclose(cb.rig, ca.rig, atol=1e-3)
    # The caches they leave behind continue the same streams.
    g_solo = _generators(model, backend, warmup)[4]
    list(g_solo.run(plans[4][0], 2))
    nxt_solo = next(iter(g_solo.generate(sample_phonemes(), n_chunks=1)))
    nxt_batched = next(iter(gens[4].generate(sample_phonemes(), n_chunks=1)))
    torch.testing.assert_close(nxt_batched.latents["video"], nxt_solo.latents["video"], atol=2e-4, rtol=1e-4)


def test_rows_do_not_depend_on_their_batch_mates(model):
    """The same character's chunk, batched with different companions (or none), is the same chunk."""
    def first_chunk(companions: int):
        gens = _generators(model, "eager", [2] + [0] * companions)
        its = [g.run(Utterance.speech(sample_phonemes(), model.cfg.media, chunks=1), 2, batched=True) for g in gens]
        jobs = [next(it) for it in its]
        run_jobs(jobs)
        return next(its[0]).latents["audio"]

    alone = first_chunk(0)
    for n in (1, 3):
        torch.testing.assert_close(first_chunk(n), alone, atol=2e-4, rtol=1e-4)


def test_jobs_must_be_run_once(model):
    g = _generators(model, "eager", [0])[0]
    it = g.run(Utterance.speech(sample_phonemes(), model.cfg.media, chunks=2), 2, batched=True)
    job = next(it)
    with pytest.raises(RuntimeError, match="run each ChunkJob"):
        next(it)
    it = g.run(Utterance.speech(sample_phonemes(), model.cfg.media, chunks=2), 2, batched=True)
    job = next(it)
    run_jobs([job])
    with pytest.raises(ValueError, match="already been run"):
        run_jobs([job])
    twin = ChunkJob(job.net, job.state, job.x, job.phonemes, job.schedule, job.generated)
    twin2 = ChunkJob(job.net, job.state, job.x, job.phonemes, job.schedule, job.generated)
    with pytest.raises(ValueError, match="same batch"):
        run_jobs([twin, twin2])


@pytest.mark.skipif(not native.available(), reason="native kernels not built")
def test_the_native_fused_layer_takes_a_batch_of_states(model, monkeypatch):
    """Rows at different chunks (their own rotations and key validity) still run the one-call fused layer."""
    mod = native._load("cpu")
    calls = []
    real = mod.layer_step
    monkeypatch.setattr(mod, "layer_step", lambda *a: (calls.append(1), real(*a))[1])
    gens = _generators(model, "native", [0, 4])
    its = [g.run(Utterance.speech(sample_phonemes(), model.cfg.media, chunks=1), 2, batched=True) for g in gens]
    jobs = [next(it) for it in its]
    calls.clear()  # the warm-up chunks ran it too
    run_jobs(jobs)
    layers = model.cfg.video.layers
    assert len(calls) == 3 * layers  # 2 denoising steps + the commit, one call per layer for both rows


def test_a_model_that_adds_nothing_to_its_tokens_batches_too():
    """No aligned phonemes and no identity anchor: the per-row token features are the number 0.0."""
    import dataclasses

    torch.manual_seed(1)
    m = AVModel(dataclasses.replace(micro_config(), aligned_phonemes=False, reference_anchor=False)).eval()
    randomize(m, std=0.05)
    plans = _plans(m)[:3]
    solo = [list(g.run(u, steps)) for g, (u, steps) in zip(_generators(m, "eager", [0, 2, 1]), plans)]
    batched = _lockstep([g.run(u, steps, batched=True) for g, (u, steps) in zip(_generators(m, "eager", [0, 2, 1]), plans)])
    for a, b in zip(solo, batched):
        assert len(a) == len(b) >= 1
        for ca, cb in zip(a, b):
            torch.testing.assert_close(cb.latents["audio"], ca.latents["audio"], atol=2e-4, rtol=1e-4)


def test_a_failing_batch_fails_only_its_own_characters(model):
    """A chunk with bad latents fails its batch (its rows get the error), and the other batches still run."""
    gens = _generators(model, "eager", [0, 0, 0])
    utt = Utterance.speech(sample_phonemes(), model.cfg.media, chunks=2)
    its = [gens[0].run(utt, 2, batched=True), gens[1].run(utt, 2, batched=True), gens[2].run(utt, 1, batched=True)]
    jobs = [next(it) for it in its]
    jobs[0].x["video"] = jobs[0].x["video"][..., :1, :, :]  # wrong channel count: the forward fails
    runs = run_jobs(jobs)
    assert sorted((r.size, r.steps, r.failed) for r in runs) == [(1, 1, False), (2, 2, True)]
    assert jobs[0].error is not None and jobs[1].error is jobs[0].error and jobs[0].result is None
    assert jobs[2].error is None and jobs[2].result is not None and jobs[2].seconds > 0
    with pytest.raises(type(jobs[0].error)):
        next(its[1])  # the batch-mate's line gets the error too
    chunk = next(its[2])  # the other batch's character goes on
    assert chunk.index == 0 and chunk.steps == 1


def test_fixed_shape_kernels_take_batches_of_their_sizes(model):
    """Kernels with batch_sizes (compile, tensorrt) run a group of 3 as 2 + 1; the chunks are the solo ones."""
    import dataclasses

    from mfruntime.engine.kernels import REFERENCE

    kern = dataclasses.replace(REFERENCE, name="fixed", batch_sizes=(1, 2))
    utt = Utterance.speech(sample_phonemes(), model.cfg.media, chunks=1)

    def gens():
        return [Generator(model, _face(10 + i), options=GenerationOptions(steps=2, seed=i), kernels=kern) for i in range(3)]

    solo = [next(g.run(utt, 2)) for g in gens()]
    its = [g.run(utt, 2, batched=True) for g in gens()]
    jobs = [next(it) for it in its]
    runs = run_jobs(jobs)
    assert [r.size for r in runs] == [2, 1]
    for it, ref in zip(its, solo):
        torch.testing.assert_close(next(it).latents["video"], ref.latents["video"], atol=2e-4, rtol=1e-4)
