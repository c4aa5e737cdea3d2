"""`mf data synth` → real mp4 files → the loader, plus bad and foreign files."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mfruntime.data.dataset import ClipWindows, LoaderConfig, scan_clips, split_clips
from mfruntime.data.media import MediaError, read_clip, write_clip
from mfruntime.data.synth import SynthConfig, make_clip


def test_corpus_files_and_sidecars(tiny_corpus):
    out, cfg, manifest = tiny_corpus
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"clip_{i:05d}.mp4" for i in range(4)]
    assert json.loads((out / "corpus.json").read_text())["clips"] == manifest["clips"]
    for i in range(4):
        side = json.loads((out / f"clip_{i:05d}.json").read_text())
        assert side["n_frames"] == 50 and side["n_samples"] == 32_000 and len(side["mouth_open"]) == 50
        assert side["text"] and side["voice"]["name"] and side["identity_seed"] >= 0
        times = [(p["start"], p["end"]) for p in side["phonemes"]]
        assert times[0][0] == 0.0 and abs(times[-1][1] - 2.0) < 1e-6
        assert all(a[1] == pytest.approx(b[0]) for a, b in zip(times, times[1:]))
        assert 0.0 <= min(side["mouth_open"]) and max(side["mouth_open"]) <= 1.0
        assert max(side["mouth_open"]) > 0.3  # the character speaks
    with av.open(str(out / "clip_00000.mp4")) as f:
        assert f.streams.video[0].codec_context.name == "h264"
        assert f.streams.audio[0].codec_context.name == "aac"


def test_loader_agrees_with_corpus(tiny_corpus):
    out, cfg, _ = tiny_corpus
    for i in range(4):
        clip = read_clip(out / f"clip_{i:05d}.mp4", size=64, fps=25, sample_rate=16_000)
        side = json.loads((out / f"clip_{i:05d}.json").read_text())
        assert clip.video.shape == (side["n_frames"], 64, 64, 3)
        assert len(clip.audio) == side["n_samples"]
        assert abs(len(clip.video) / 25 - len(clip.audio) / 16_000) < 1 / 25  # A/V durations within a frame
        # The decoded audio is speech where the sidecar says speech is, and quiet before it starts.
        sr = 16_000
        lead = clip.audio[: int(side["speech_start"] * sr) - 400]
        body = clip.audio[int(side["speech_start"] * sr): int(side["speech_end"] * sr)]
        assert np.abs(body).max() > 0.05 and (len(lead) == 0 or np.abs(lead).max() < 0.02)


def test_corpus_is_deterministic(tmp_path, tiny_corpus):
    out, cfg, _ = tiny_corpus
    again = SynthConfig(out=str(tmp_path), clips=cfg.clips, seconds=cfg.seconds, size=cfg.size, seed=cfg.seed)
    make_clip(again, 2)  # in this process, as a third way to make clip 2
    # This process may already have run eSpeak, so compare what is stable in-process exactly ...
    a = json.loads((out / "clip_00002.json").read_text())
    b = json.loads((tmp_path / "clip_00002.json").read_text())
    assert a["text"] == b["text"] and a["voice"] == b["voice"] and a["identity"] == b["identity"]
    assert [p["symbol"] for p in a["phonemes"]] == [p["symbol"] for p in b["phonemes"]]
    # ... and the whole corpus byte for byte through the corpus builder (fresh process per clip).
    from mfruntime.data.synth import synthesize_corpus
    synthesize_corpus(SynthConfig(out=str(tmp_path / "again"), clips=2, seconds=cfg.seconds, size=cfg.size,
                                  seed=cfg.seed, workers=1), progress=False)
    for i in range(2):
        for ext in (".mp4", ".json"):
            assert (out / f"clip_{i:05d}{ext}").read_bytes() == (tmp_path / "again" / f"clip_{i:05d}{ext}").read_bytes()


def test_av_alignment_through_mp4(tmp_path):
    """A flash on frame 30 and a click at 1.2 s decode to the same time, within a frame."""
    frames = np.zeros((50, 64, 64, 3), np.uint8)
    frames[30] = 255
    pcm = np.zeros(32_000, np.float32)
    pcm[19_200:19_360] = 0.8 * np.sin(np.arange(160) * 0.6)
    write_clip(tmp_path / "flash.mp4", frames, pcm, 25, 16_000)
    clip = read_clip(tmp_path / "flash.mp4", 64, 25, 16_000)
    flash_t = clip.video.mean(axis=(1, 2, 3)).argmax() / 25
    click_t = np.argmax(np.abs(clip.audio) > 0.2) / 16_000
    assert abs(flash_t - click_t) < 1 / 25


def _write_foreign(path: Path, seconds: float = 2.0, fps: int = 30, rate: int = 44_100, w: int = 96, h: int = 72,
                   audio: str = "tone", container: str | None = None) -> None:
    """A user-style clip: other fps, stereo audio at another rate, non-square frames."""
    with av.open(str(path), "w", format=container) as f:
        vs = f.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = None if audio == "none" else f.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * fps)):
            img = np.full((h, w, 3), (i * 5) % 255, np.uint8)
            img[:, : w // 2] = 40  # left half dark, so the centre crop is visible
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            f.mux(vs.encode(frame))
        f.mux(vs.encode(None))
        if aus is None:
            return
        t = np.arange(int(seconds * rate)) / rate
        sig = 0.3 * np.sin(2 * np.pi * 220 * t) if audio == "tone" else np.zeros_like(t)
        stereo = np.stack([sig, sig]).astype(np.float32)
        for start in range(0, stereo.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start:start + 1024]), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = rate, start, Fraction(1, rate)
            f.mux(aus.encode(af))
        f.mux(aus.encode(None))


def test_user_layouts_are_resampled(tmp_path):
    """VoxCeleb2-style nesting, mkv and mov, 30 fps, 44.1 kHz stereo, non-square; LRS3 transcript."""
    (tmp_path / "id001" / "vid_a").mkdir(parents=True)
    _write_foreign(tmp_path / "id001" / "vid_a" / "00001.mp4")
    _write_foreign(tmp_path / "id001" / "00002.mkv", seconds=1.5, fps=24, container="matroska")
    _write_foreign(tmp_path / "talk.mov", seconds=1.0, fps=50, rate=48_000, w=64, h=128)
    (tmp_path / "id001" / "vid_a" / "00001.txt").write_text("Text:  HELLO THERE\nConf:  4\n")
    scan = scan_clips(tmp_path, LoaderConfig(size=64), progress=False)
    assert not scan.skipped and len(scan.clips) == 3
    by_name = {c.path.name: c for c in scan.clips}
    assert by_name["00001.mp4"].text == "HELLO THERE" and by_name["00001.mp4"].truth is None
    assert by_name["00001.mp4"].n_frames == 50 and by_name["00002.mkv"].n_frames == 37
    clip = read_clip(tmp_path / "talk.mov", 64, 25, 16_000)
    assert clip.video.shape == (25, 64, 64, 3) and clip.audio.shape == (16_000,)
    clip = read_clip(tmp_path / "id001" / "vid_a" / "00001.mp4", 64, 25, 16_000)
    assert clip.video[:, :, :20].mean() < 60  # centre crop of a 96×72 frame keeps part of the dark left half
    # 220 Hz tone survives resampling to mono 16 kHz.
    segment = clip.audio[4000:20_000]
    spectrum = np.abs(np.fft.rfft(segment))
    assert abs(np.argmax(spectrum) * 16_000 / len(segment) - 220) < 3


def test_bad_files_are_skipped_and_counted(tmp_path, tiny_corpus, caplog):
    out, _, _ = tiny_corpus
    for i in range(3):
        shutil.copy(out / f"clip_{i:05d}.mp4", tmp_path / f"good_{i}.mp4")
    data = (out / "clip_00003.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.mp4").write_text("this is a text file, not a video")
    _write_foreign(tmp_path / "video_only.mp4", audio="none")
    _write_foreign(tmp_path / "silent.mp4", audio="silent")
    (tmp_path / "empty.webm").write_bytes(b"")
    with caplog.at_level("WARNING"):
        scan = scan_clips(tmp_path, LoaderConfig(), progress=False)
    assert len(scan.clips) == 3
    reasons = {p.name: r for p, r in scan.skipped}
    assert set(reasons) == {"truncated.mp4", "notes.mp4", "video_only.mp4", "silent.mp4", "empty.webm"}
    assert "no audio track" in reasons["video_only.mp4"] and "silent" in reasons["silent.mp4"]
    for name in reasons:  # one warning per skipped file, plus the count at the end
        assert sum(name in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 1
    assert any("skipped 5 of 8" in r.getMessage() for r in caplog.records)
    with pytest.raises(MediaError, match="no audio track"):
        read_clip(tmp_path / "video_only.mp4", 64, 25, 16_000)
    ds = ClipWindows(tmp_path, "all", LoaderConfig(window_seconds=0.96), scan=scan)
    assert len(ds) == 3 * 2 and ds[0]["video"].shape == (24, 3, 64, 64)


def test_windows_split_and_batches(tiny_corpus):
    out, _, _ = tiny_corpus
    cfg = LoaderConfig(window_seconds=0.64, val_fraction=0.25)
    scan = scan_clips(out, cfg, progress=False)
    train, val = ClipWindows(out, "train", cfg, scan=scan), ClipWindows(out, "val", cfg, scan=scan)
    names_t, names_v = {c.relpath for c in train.clips}, {c.relpath for c in val.clips}
    assert len(names_v) == 1 and len(names_t) == 3 and not names_t & names_v
    # The split depends on paths only, not on listing order.
    again_t, again_v = split_clips(list(reversed(scan.clips)), cfg)
    assert {c.relpath for c in again_v} == names_v
    assert len(train) == 3 * 3  # 2 s clips, 0.64 s windows → 3 windows each
    item = train[1]
    assert item["video"].shape == (16, 3, 64, 64) and item["video"].dtype == torch.uint8
    assert item["audio"].shape == (16 * 640,) and item["audio"].dtype == torch.float32
    assert item["has_truth"] and not torch.isnan(item["mouth_open"]).any()
    side = json.loads((out / item["clip"]).with_suffix(".json").read_text())
    assert np.allclose(item["mouth_open"].numpy(), side["mouth_open"][16:32], atol=1e-5)
    assert all(0 <= s < e <= 0.64 + 1e-9 for _, s, e in item["phonemes"])
    from mfruntime.data.dataset import collate_windows
    batch = next(iter(DataLoader(train, batch_size=4, collate_fn=collate_windows)))
    assert batch["video"].shape == (4, 16, 3, 64, 64) and len(batch["phonemes"]) == 4
    with pytest.raises(IndexError):
        train[len(train)]


def test_loader_config_errors(tmp_path):
    with pytest.raises(ValueError, match="size"):
        LoaderConfig(size=100)
    with pytest.raises(ValueError, match="val_fraction"):
        LoaderConfig(val_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_clips(tmp_path / "nope")
    with pytest.raises(ValueError, match="frames must be"):
        write_clip(tmp_path / "x.mp4", np.zeros((2, 64, 64), np.uint8), np.zeros(10, np.float32), 25, 16_000)
