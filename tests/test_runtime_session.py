"""mfruntime.Session on the bundled tiny model: chunks, timing, interrupts, characters, bad input, backends."""
import threading

import numpy as np
import pytest
from PIL import Image

from mfruntime import Session
from mfruntime.engine.backends import BackendUnavailable, pick_backend, why_unavailable
from mfruntime.runtime.session import prepare_pcm

TEXT = "Hello there, nice to meet you."


@pytest.fixture(scope="module")
def session():
    return Session(device="cpu", backend="eager", threads=2)  # fixed: bit-exact comparisons below


def _check_chunks(chunks, session, first_pts=None):
    spc = session.sample_rate * 4 // session.fps
    for i, c in enumerate(chunks):
        assert c.frames.shape == (4, 64, 64, 3) and c.frames.dtype == np.uint8
        assert c.pcm.shape == (spc,) and c.pcm.dtype == np.float32 and np.abs(c.pcm).max() <= 1.0
        assert len(c.frames) / c.fps == pytest.approx(len(c.pcm) / c.sample_rate)  # A/V durations agree
        assert c.seq == i and c.last == (i == len(chunks) - 1)
    pts = np.array([c.pts for c in chunks])
    assert np.allclose(np.diff(pts), 0.16)  # continuous: each chunk starts where the last ended
    # pts is an exact sample count over the rate (docs/PROTOCOL.md): clients recover the integer sample clock.
    clock = [round(c.pts * c.sample_rate) for c in chunks]
    assert all(c.pts == k / c.sample_rate for c, k in zip(chunks, clock))
    assert np.diff(clock).tolist() == [len(c.pcm) for c in chunks[:-1]]
    if first_pts is not None:
        assert pts[0] == pytest.approx(first_pts)


def test_say_yields_continuous_chunks_and_stats(session):
    start = session.clock
    chunks = list(session.say(TEXT))
    assert 8 <= len(chunks) <= 20  # ≈ 1.9 s of speech in 160-ms chunks
    _check_chunks(chunks, session, first_pts=start)
    assert len({c.utterance for c in chunks}) == 1
    # The next utterance continues the stream clock.
    more = list(session.say("Bye."))
    _check_chunks(more, session, first_pts=chunks[-1].pts + 0.16)
    assert more[0].utterance == chunks[0].utterance + 1
    st = session.stats()
    assert st.backend == "eager" and st.chunks >= len(chunks) + len(more) and st.utterances >= 2
    assert st.ttfc_ms > 0 and st.rtf > 0 and st.chunk_ms_p50 <= st.chunk_ms_p95 <= st.chunk_ms_max


def test_same_seed_gives_the_same_output():
    a = [c for c in Session(device="cpu", backend="eager", seed=3, threads=2).say(TEXT)]
    b = [c for c in Session(device="cpu", backend="eager", seed=3, threads=2).say(TEXT)]
    assert all(np.array_equal(x.frames, y.frames) and np.array_equal(x.pcm, y.pcm) for x, y in zip(a, b))


def test_sessions_share_loaded_weights(session):
    assert Session(device="cpu", backend="eager").model is session.model


def test_interrupt_ends_the_utterance_within_one_chunk(session):
    it = session.say("This is a long sentence that nobody will hear to the end, because we stop it early.")
    got = [next(it)]
    session.interrupt()
    got += list(it)
    assert len(got) == 2  # the chunk after the interrupt is the last one
    assert got[-1].last and got[-1].interrupted


def test_interrupt_from_another_thread(session):
    got, seen_first = [], threading.Event()

    def consume():
        for c in session.say("Another long sentence, spoken while a second thread decides to stop it right away."):
            got.append(c)
            seen_first.set()

    t = threading.Thread(target=consume)
    t.start()
    assert seen_first.wait(30)
    session.interrupt()
    t.join(30)
    assert got[-1].last and got[-1].interrupted
    assert len(got) <= 3  # the first chunk, possibly one in flight, and the one that ends it


def test_a_new_utterance_ends_the_previous_iterator(session):
    old = session.say("The first line is long enough to have many chunks in it, surely more than two.")
    next(old)
    new = list(session.say("Second."))
    assert list(old) == []  # superseded: no more chunks
    assert new[-1].last


def test_steps_change_between_utterances(session):
    session.steps = 1
    list(session.say("One step."))
    assert session.stats().steps == 1
    with pytest.raises(ValueError, match="steps must be"):
        session.steps = 0
    with pytest.raises(ValueError, match="steps must be"):
        session.say("x", steps=51)
    session.steps = 4


def test_drive_lip_syncs_given_audio_and_returns_it(session):
    sr = 44_100
    pcm = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(1.0 * sr)) / sr)).astype(np.float32)
    chunks = list(session.drive(pcm, sr))
    _check_chunks(chunks, session)
    expected = prepare_pcm(pcm, sr, 16_000)
    out = np.concatenate([c.pcm for c in chunks])
    assert np.array_equal(out[:len(expected)], expected) and not out[len(expected):].any()
    stereo_int16 = (np.stack([pcm, pcm], 1) * 32767).astype(np.int16)
    assert len(list(session.drive(stereo_int16, sr))) == len(chunks)


def test_drive_refuses_audio_at_the_wrong_scale_and_warns_when_it_clips(session, caplog):
    loud = np.full(1600, 10.0, np.float32)
    with pytest.raises(ValueError, match="peak is 10: scale it"):
        session.drive(loud, 16000)
    hot = np.zeros(3200, np.float32)
    hot[100:110] = 1.2
    with caplog.at_level("WARNING", logger="mfruntime.runtime.session"):
        chunks = list(session.drive(hot, 16000))
    assert "10 samples above 1.0 are clipped" in caplog.text
    assert max(float(np.abs(c.pcm).max()) for c in chunks) <= 1.0


@pytest.mark.parametrize("pcm, rate, message", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.full(1600, np.nan, np.float32), 16000, "NaN"),
    (np.zeros(1600, np.float32), 100, "sample_rate"),
    (np.zeros((3, 3, 3), np.float32), 16000, "mono"),
    (np.zeros(1600, np.int32), 16000, "float"),
    (np.zeros(16000 * 601, np.float32), 16000, "more than"),
])
def test_drive_rejects_bad_audio(session, pcm, rate, message):
    with pytest.raises(ValueError, match=message):
        session.drive(pcm, rate)


@pytest.mark.parametrize("text, message", [("", "empty"), ("   ", "empty"), ("a" * 5000, "characters"), (None, "string"),
                                           ("Hello\x00world", "U\\+0000 \\(NUL\\) at position 5"),
                                           ("\x00Hello world", "U\\+0000 \\(NUL\\) at position 0"),
                                           ("\ud83d", "surrogate")])
def test_say_rejects_bad_text_at_call_time(session, text, message):
    with pytest.raises(ValueError, match=message):
        session.say(text)


def test_unknown_voice_is_a_clear_error(session):
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        session.say("Hello.", voice="xx-nowhere+m9")


def test_set_character_accepts_any_rgb_image_and_rejects_the_rest(session, tmp_path):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    assert session.set_character(wide, renderer="model") == "model"  # noise has no face to animate as a portrait
    assert session.character.shape == (64, 64, 3)
    assert np.array_equal(session.character, np.asarray(Image.fromarray(wide[:, 35:125]).resize((64, 64), Image.Resampling.LANCZOS)))
    path = tmp_path / "face.png"
    Image.fromarray(wide).save(path)
    session.set_character(str(path), renderer="model")
    session.set_character(Image.fromarray(wide).convert("L"), renderer="model")  # PIL images are converted to RGB
    chunks = list(session.say("New face."))
    assert chunks[0].frames.shape == (4, 64, 64, 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    for bad, message in [(np.zeros((64, 64), np.uint8), "RGB"), (np.zeros((64, 64, 4), np.uint8), "alpha"),
                         (np.zeros((64, 64, 3), np.float32), "uint8"), (np.zeros((8, 8, 3), np.uint8), "smaller"),
                         (str(tmp_path / "missing.png"), "does not exist"), (str(tmp_path / "broken.png"), "could not be read"),
                         (42, "RGB array")]:
        with pytest.raises(ValueError, match=message):
            session.set_character(bad)


def test_backend_choice_and_clear_refusals():
    import torch

    cpu = torch.device("cpu")
    from mfruntime.engine import native

    # native when the setup built it (measured faster here, docs/ENGINE.md), else eager
    assert pick_backend("auto", cpu) == ("native" if native.available() else "eager")
    assert "CUDA device" in why_unavailable("tensorrt", cpu)
    with pytest.raises(BackendUnavailable, match="tensorrt backend needs a CUDA device"):
        Session(device="cpu", backend="tensorrt")
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        Session(device="cpu", backend="fast")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
            Session(device="cuda")


def test_compile_backend_matches_eager():
    """torch.compile of the block sublayers (static shapes): same chunks as eager up to float rounding."""
    eager = list(Session(device="cpu", backend="eager", seed=1, threads=2).say("Compiled."))
    compiled = list(Session(device="cpu", backend="compile", seed=1, threads=2).say("Compiled."))
    assert len(eager) == len(compiled)
    for a, b in zip(eager, compiled):
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 1.0
        assert np.abs(a.pcm - b.pcm).max() < 2e-2


def test_mf_demo_writes_a_playable_mp4(tmp_path, capsys):
    import av

    from mfruntime.cli import main

    out = tmp_path / "demo.mp4"
    assert main(["demo", "--text", "Hi there.", "--out", str(out), "--backend", "eager"]) == 0
    printed = capsys.readouterr().out
    assert "time to first chunk" in printed and "real-time factor" in printed
    with av.open(str(out)) as f:
        kinds = {s.type: s.codec_context.name for s in f.streams}
        assert kinds == {"video": "h264", "audio": "aac"}
    assert main(["demo", "--text", "", "--out", str(out)]) == 2
    assert "empty" in capsys.readouterr().err


def test_reserved_utterances_take_their_id_first_and_skip_work_once_superseded(session):
    first = session.reserve_say("The first line.")
    second = session.reserve_say("The second line.")
    assert second.uid == first.uid + 1 and first.superseded and not second.superseded
    first.prepare()  # superseded: eSpeak is not asked, nothing is generated
    assert list(first.chunks()) == []
    chunks = list(second.chunks())  # prepares on demand
    assert chunks and chunks[-1].last and all(c.utterance == second.uid for c in chunks)
    with pytest.raises(ValueError, match="unknown voice"):
        session.reserve_say("Hi.", voice="xx-nowhere+m9")


def test_chunks_carry_rig_frames_and_rig_only_mode_skips_the_pixels_of_the_same_stream():
    """The bundled model has a rig head: every chunk carries one rig frame per video frame (face controls in
    range, viseme weights summing to 1). Rig-only mode (video=False) generates the same stream — same PCM, same
    rig frames — without frames; rig=False drops the rig."""
    from mfruntime.rig import BOUNDED_CONTROLS, CONTROLS, FACE_CONTROLS

    full = list(Session(device="cpu", backend="eager", seed=5, threads=2).say(TEXT))
    s = Session(device="cpu", backend="eager", seed=5, threads=2, video=False)
    assert s.outputs == {"video": False, "rig": True}
    rig_only = list(s.say(TEXT))
    assert len(full) == len(rig_only)
    for a, b in zip(full, rig_only):
        assert a.rig.shape == (len(a.frames), len(CONTROLS)) and a.rig.dtype == np.float32
        assert b.frames is None and np.array_equal(a.rig, b.rig) and np.array_equal(a.pcm, b.pcm)
        assert b.duration == pytest.approx(a.duration)
    rig = np.concatenate([c.rig for c in full])
    k = len(FACE_CONTROLS)
    assert np.allclose(rig[:, k:].sum(1), 1.0, atol=1e-5)
    bounded = rig[:, [CONTROLS.index(n) for n in BOUNDED_CONTROLS]]
    assert bounded.min() >= 0.0 and bounded.max() <= 1.0
    assert rig[:, CONTROLS.index("jawOpen")].max() > 0.3  # the mouth opens while it speaks
    s.set_outputs(video=True, rig=False)
    c = next(iter(s.say("Bye.")))
    assert c.rig is None and c.frames.shape == (4, 64, 64, 3)
    with pytest.raises(ValueError, match="True or False"):
        s.set_outputs(video="no")


def test_rig_only_mode_needs_a_model_with_a_rig_head(tmp_path):
    import dataclasses

    from mfruntime.config import preset
    from mfruntime.model.av import AVModel
    from mfruntime.model.bundle import save_bundle

    path = save_bundle(AVModel(dataclasses.replace(preset("tiny"), rig="")), tmp_path / "norig.safetensors")
    s = Session(model=str(path), device="cpu", backend="eager")
    assert not s.has_rig and s.outputs == {"video": True, "rig": False}
    assert next(iter(s.say("Hi."))).rig is None
    with pytest.raises(ValueError, match="rig head"):
        s.set_outputs(video=False)
    with pytest.raises(ValueError, match="rig head"):
        Session(model=str(path), device="cpu", backend="eager", video=False)
