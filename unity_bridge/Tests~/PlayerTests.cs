// The playback core without a network: resampling, the jitter buffer, the audio clock and frame presentation.
using System;
using System.Collections.Generic;
using System.Linq;

namespace Mfruntime.Tests
{
    public static class PlayerTests
    {
        private const int Spc = 2560;  // samples per 160-ms chunk at 16 kHz

        private static StreamChunk Chunk(long utterance, long seq, long clock, float value, bool eou = false,
                                         bool interrupted = false, int samples = Spc, int frames = 4)
        {
            var video = new byte[frames * 2 * 2 * 3];
            for (int i = 0; i < video.Length; i++) video[i] = (byte)(i / 12);  // frame index in every byte of a frame
            return new StreamChunk
            {
                Character = "npc", Utterance = utterance, Seq = seq, Clock = clock, Pts = clock / 16000.0,
                Width = 2, Height = 2, Frames = frames, Fps = 25, SampleRate = 16000, Samples = samples,
                Eou = eou, Interrupted = interrupted, Video = video, Pcm = Enumerable.Repeat(value, samples).ToArray(),
            };
        }

        private static float[] Read(Player p, int n)
        {
            var buf = new float[n];
            p.ReadAudio(buf, 0, n, 1);
            return buf;
        }

        private static List<PlayerEvent> Events(Player p)
        {
            var list = new List<PlayerEvent>();
            PlayerEvent e;
            while (p.TryGetEvent(out e)) list.Add(e);
            return list;
        }

        private static Player At16k(int prebufferMs = 80)
        {
            return new Player(new PlayerSettings { OutputRate = 16000, PrebufferMs = prebufferMs });
        }

        [Test]
        public static void ResamplerKeepsPitchLevelAndCountAndIgnoresHowInputIsSplit()
        {
            foreach (int rate in new[] { 48000, 44100, 22050 })
            {
                var input = Enumerable.Range(0, 16000).Select(n => (float)Math.Sin(2 * Math.PI * 1000 * n / 16000.0)).ToArray();
                var whole = new Resampler(16000, rate);
                whole.Write(input, 0, input.Length);
                var a = new List<float>();
                while (whole.CanRead) a.Add(whole.ReadOne());
                var pieces = new Resampler(16000, rate);
                var b = new List<float>();
                var rng = new Random(rate);
                for (int at = 0; at < input.Length;)
                {
                    int n = Math.Min(input.Length - at, rng.Next(1, 700));
                    pieces.Write(input, at, n);
                    at += n;
                    while (pieces.CanRead && rng.Next(4) != 0) b.Add(pieces.ReadOne());
                }
                while (pieces.CanRead) b.Add(pieces.ReadOne());
                Check.True(a.SequenceEqual(b), rate + " Hz: pieces and whole give the same samples");
                long expect = (long)(input.Length - whole.HalfTaps) * rate / 16000;
                Check.True(Math.Abs(a.Count - expect) <= 1, rate + " Hz: " + a.Count + " outputs for " + expect);
                // Compare with the ideal sine at the output rate, away from the start-up edge.
                double err = 0, rms = 0;
                int from = rate / 10, to = a.Count - rate / 10;
                for (int k = from; k < to; k++)
                {
                    double ideal = Math.Sin(2 * Math.PI * 1000 * k / (double)rate);
                    err = Math.Max(err, Math.Abs(a[k] - ideal));
                    rms += a[k] * a[k];
                }
                Check.True(err < 2e-3, rate + " Hz: 1 kHz sine off by " + err);
                Check.Near(Math.Sqrt(0.5), Math.Sqrt(rms / (to - from)), 1e-3, rate + " Hz: RMS");
            }
            var dc = new Resampler(16000, 44100);
            dc.Write(Enumerable.Repeat(0.5f, 4000).ToArray(), 0, 4000);
            for (int i = 0; i < 100; i++) dc.ReadOne();
            for (int i = 0; i < 5000; i++) Check.Near(0.5, dc.ReadOne(), 1e-6, "a constant passes unchanged at every phase");
        }

        [Test]
        public static void PrebufferThenPlayOnTheAudioClockWithFramesInStep()
        {
            var p = At16k(prebufferMs: 200);  // 3200 samples: more than one chunk
            p.Push(Chunk(1, 0, 0, 0.5f));
            Check.True(Read(p, 1000).All(v => v == 0), "silence while prebuffering");
            Check.Equal(-1L, p.AudioClock, "no clock before anything plays");
            Check.True(p.TakeFrame() == null, "no frame before its audio");
            p.Push(Chunk(1, 1, Spc, 0.5f));
            var started = Read(p, 100);
            Check.True(started.Skip(40).All(v => Math.Abs(v - 0.5f) < 1e-4), "plays once prebuffered");
            Check.Equal(PlayerEventKind.UtteranceStarted, Events(p).Single().Kind, "started event");
            var f = p.TakeFrame();
            Check.True(f != null && f.Clock == 0 && f.Rgb[0] == 0, "frame 0 is due at clock 0");
            Check.True(p.TakeFrame() == null, "frame 1 is not due yet");
            Read(p, 640 - 100);
            Check.Equal(640L, p.AudioClock, "the clock counts played samples");
            Check.Equal(640L, p.TakeFrame().Clock, "frame 1 at 640");
            Read(p, 3 * 640);  // three frame times without looking
            var late = p.TakeFrame();
            Check.Equal(4 * 640L, late.Clock, "the newest due frame (frame 0 of chunk 1)");
            Check.Equal(2L, p.Stats.DroppedFrames, "the two skipped ones are dropped, never shown late");
        }

        [Test]
        public static void EndOfUtterancePlaysItsTailAndFiresEnded()
        {
            var p = At16k(prebufferMs: 0);
            p.Push(Chunk(7, 0, 0, 0.25f));
            p.Push(Chunk(7, 1, Spc, 0.25f, eou: true));
            var audio = Read(p, 3 * Spc);
            int loud = audio.Count(v => Math.Abs(v - 0.25f) < 1e-3);
            Check.True(loud >= 2 * Spc - 40 && audio.Skip(2 * Spc + 20).All(v => Math.Abs(v) < 1e-6), "all of it plays, then silence (" + loud + ")");
            var ev = Events(p);
            Check.Equal(2, ev.Count, "start and end");
            Check.True(ev[1].Kind == PlayerEventKind.UtteranceEnded && ev[1].Utterance == 7 && !ev[1].Interrupted, "ended normally: " + ev[1]);
            Check.Equal(2L * Spc - 1, p.AudioClock, "idle clock rests on the last sample played");
            Check.Equal(0L, p.Stats.Underruns, "no underrun at the end of a line");
            Check.Equal(0L, p.Sounding, "nothing sounding");
        }

        [Test]
        public static void UnderrunHoldsTheClockAndLostChunksPlayAsSilence()
        {
            var p = At16k(prebufferMs: 0);
            p.Push(Chunk(1, 0, 0, 0.5f));
            Read(p, Spc + 500);
            long held = p.AudioClock;
            Check.True(held < Spc && held > Spc - 40, "the clock stops at the end of what arrived: " + held);
            Check.Equal(1L, p.Stats.Underruns, "one underrun");
            Read(p, 300);
            Check.Equal(held, p.AudioClock, "and holds while starved");
            p.Push(Chunk(1, 2, 2 * Spc, -0.5f, eou: true));  // seq 1 was lost
            Check.Equal(1L, p.Stats.LostChunks, "the gap is counted");
            var audio = Read(p, 3 * Spc);
            int silent = audio.Count(v => Math.Abs(v) < 1e-4), neg = audio.Count(v => Math.Abs(v + 0.5f) < 1e-3);
            Check.True(silent > Spc - 100 && neg > Spc - 100, "a chunk of silence then the next chunk: " + silent + ", " + neg);
            Check.True(Events(p).Any(e => e.Kind == PlayerEventKind.UtteranceEnded && !e.Interrupted), "ends normally");
            p.Push(Chunk(1, 1, Spc, 0.9f));
            Check.True(p.Stats.IgnoredChunks + p.Stats.LateChunks >= 1, "the lost chunk arriving late is not played");
        }

        [Test]
        public static void EndMarkerEndsAnInterruptedUtterance()
        {
            var p = At16k(prebufferMs: 0);
            p.Push(Chunk(3, 0, 0, 0.5f));
            p.Push(Chunk(3, 1, Spc, 0f, eou: true, interrupted: true, samples: 0, frames: 0));
            Read(p, 2 * Spc);
            var ev = Events(p);
            Check.True(ev.Count == 2 && ev[1].Kind == PlayerEventKind.UtteranceEnded && ev[1].Interrupted, "ended as interrupted");
        }

        [Test]
        public static void ANewerUtteranceSupersedesTheBufferedOne()
        {
            var p = At16k(prebufferMs: 0);
            p.Push(Chunk(1, 0, 0, 0.5f));
            p.Push(Chunk(1, 1, Spc, 0.5f));
            p.Push(Chunk(1, 2, 2 * Spc, 0.5f));
            Read(p, 1000);
            // What the server sends when a new say supersedes a line: the old line's end marker, then the new line.
            p.Push(Chunk(1, 3, 3 * Spc, 0f, eou: true, interrupted: true, samples: 0, frames: 0));
            p.Push(Chunk(2, 0, 3 * Spc, -0.25f));
            p.Push(Chunk(2, 1, 4 * Spc, -0.25f, eou: true));
            var audio = Read(p, 4 * Spc);
            int old = audio.Count(v => v > 0.01f);
            Check.True(old < 250, "the old line stops within a few ms: " + old + " more samples");
            Check.True(audio.Count(v => Math.Abs(v + 0.25f) < 1e-3) > 2 * Spc - 100, "then the new line plays whole");
            var ev = Events(p).Select(e => e.ToString()).ToList();
            Check.Equal("UtteranceStarted 1|UtteranceEnded 1 (interrupted)|UtteranceStarted 2|UtteranceEnded 2", string.Join("|", ev), "events");
            Check.True(p.TakeFrame().Utterance == 2, "the newest frame is the new line's");
        }

        [Test]
        public static void CutStopsAtOnceAndIgnoresTheRestOfTheLine()
        {
            var p = At16k(prebufferMs: 0);
            p.Push(Chunk(4, 0, 0, 0.5f));
            p.Push(Chunk(4, 1, Spc, 0.5f));
            Read(p, 800);
            p.Cut(4);
            var after = Read(p, Spc);
            int loud = after.Count(v => Math.Abs(v) > 1e-4);
            Check.True(loud < 250, "silent within ~15 ms of the cut: " + loud);
            Check.True(after.Skip(loud).All(v => Math.Abs(v) < 1e-4), "and stays silent");
            p.Push(Chunk(4, 2, 2 * Spc, 0.5f, eou: true));
            Check.True(Read(p, Spc).All(v => Math.Abs(v) < 1e-4), "later chunks of the cut line are ignored");
            var ev = Events(p);
            Check.True(ev.Last().Kind == PlayerEventKind.UtteranceEnded && ev.Last().Interrupted, "ended as interrupted");
            var f = p.TakeFrame();
            Check.True(f != null && f.Clock <= 800, "only the frame that was due at the cut may still show");
            Check.Equal(0, p.QueuedFrames, "the rest of its frames are gone");
            p.Push(Chunk(5, 0, 3 * Spc, -0.5f, eou: true));
            Check.True(Read(p, 2 * Spc).Count(v => Math.Abs(v + 0.5f) < 1e-3) > Spc - 100, "the next line plays");
            Events(p);
            p.Cut(6);  // Say returned 6, no chunk of it yet: it ends at once, and its chunks will be ignored
            var cutEarly = Events(p);
            Check.True(cutEarly.Count == 1 && cutEarly[0].Utterance == 6 && cutEarly[0].Interrupted, "a line cut before its chunks came ends");
            p.Push(Chunk(6, 0, 4 * Spc, 0.5f));
            Check.True(Read(p, Spc).All(v => Math.Abs(v) < 1e-4), "and its chunks are ignored");
        }

        [Test]
        public static void DuplicatesAreLateAndResetStartsOver()
        {
            var p = At16k(prebufferMs: 0);
            p.Push(Chunk(1, 0, 0, 0.5f));
            p.Push(Chunk(1, 0, 0, 0.5f));
            Check.Equal(1L, p.Stats.LateChunks, "a repeated chunk is late");
            Read(p, 500);
            p.Reset();
            Check.Equal(-1L, p.AudioClock, "reset clock");
            Check.True(Read(p, 500).All(v => v == 0), "reset queue");
            p.Push(Chunk(1, 0, 0, -0.5f, eou: true));  // a restarted server counts from 1 and 0 again
            Check.True(Read(p, Spc).Count(v => Math.Abs(v + 0.5f) < 1e-3) > Spc - 100, "plays after reset");
        }

        [Test]
        public static void ALongLineQueuedAheadShowsEveryFrameInTime()
        {
            var p = At16k(prebufferMs: 0);
            for (int s = 0; s < 125; s++) p.Push(Chunk(1, s, (long)s * Spc, 0.2f, eou: s == 124));  // 20 s, all at once
            var shown = 0;
            Read(p, 320);  // look mid-frame: each frame period then has exactly one new frame
            for (int k = 0; k < 500; k++)
            {
                if (p.TakeFrame() != null) shown++;
                Read(p, 640);
            }
            Check.Equal(500, shown, "one new frame per frame period, none lost to queueing");
            Check.Equal(0L, p.Stats.DroppedFrames, "none dropped");
        }

        [Test]
        public static void CutFadesEvenAtAChunkBoundary()
        {
            foreach (int at in new[] { 2481, 2500, 2560, 1000 })
            {
                var p = At16k(prebufferMs: 0);
                p.Push(Chunk(1, 0, 0, 0.5f));
                p.Push(Chunk(1, 1, Spc, 0.5f));
                Read(p, at);
                p.Cut(1);
                var tail = Read(p, 400);
                int last = Array.FindLastIndex(tail, v => Math.Abs(v) > 1e-6f);
                Check.True(last < 100, "cut at " + at + ": silent within 100 samples (" + last + ")");
                for (int i = 1; i <= last; i++) Check.True(tail[i] <= tail[i - 1] + 1e-6f, "cut at " + at + ": the level only falls");
                Check.True(last < 0 || tail[last] < 0.05f, "cut at " + at + ": no step to silence (" + (last < 0 ? 0 : tail[last]) + ")");
            }
        }

        [Test]
        public static void OutputLatencyDelaysTheFaceToWhatIsHeard()
        {
            var p = new Player(new PlayerSettings { OutputRate = 16000, PrebufferMs = 0, OutputLatencyMs = 40 });
            p.Push(Chunk(1, 0, 0, 0.5f, eou: true));
            Read(p, 10);
            Check.True(p.TakeFrame() == null, "frame 0 waits until its audio has left the engine's buffers");
            Read(p, 640);
            Check.Equal(0L, p.TakeFrame().Clock, "then it shows");
        }

        [Test]
        public static void NobodyPlayingKeepsTheQueueBoundedAndResetEndsOpenLines()
        {
            var p = new Player(new PlayerSettings { OutputRate = 16000, PrebufferMs = 0, MaxQueuedSeconds = 1 });
            for (int s = 0; s < 20; s++) p.Push(Chunk(1, s, (long)s * Spc, 0.1f));
            Check.True(p.QueuedSamples <= 16000, "at most a second queued: " + p.QueuedSamples);
            Check.True(p.Stats.OverflowChunks >= 13, "the rest counted as overflow: " + p.Stats.OverflowChunks);
            Read(p, 100);
            p.Push(Chunk(2, 0, 30 * Spc, 0.1f));  // supersedes 1; 2 is buffered but not heard yet
            Events(p);
            p.Reset();
            var ev = Events(p);
            Check.True(ev.Any(e => e.Utterance == 2 && e.Kind == PlayerEventKind.UtteranceEnded && e.Interrupted), "reset ends the open line");
        }

        [Test]
        public static void FramesNeverGoBackwardsWhateverTheReadPattern()
        {
            var p = new Player(new PlayerSettings { OutputRate = 44100, PrebufferMs = 40 });
            var rng = new Random(5);
            var shown = new List<long>();
            long clock = 0;
            for (long u = 1; u <= 3; u++)
                for (int s = 0; s < 6; s++)
                {
                    p.Push(Chunk(u, s, clock, 0.1f * u, eou: s == 5));
                    clock += Spc;
                    for (int k = 0; k < 3; k++)
                    {
                        var buf = new float[rng.Next(64, 4096) * 2];
                        p.ReadAudio(buf, 0, buf.Length / 2, 2);
                        Check.True(Enumerable.Range(0, buf.Length / 2).All(i => buf[2 * i] == buf[2 * i + 1]), "both channels equal");
                        var f = p.TakeFrame();
                        if (f != null) shown.Add(f.Clock);
                    }
                }
            for (int k = 0; k < 50; k++)
            {
                p.ReadAudio(new float[2048], 0, 1024, 2);
                var f = p.TakeFrame();
                if (f != null) shown.Add(f.Clock);
            }
            Check.True(shown.Count > 20, "frames were shown: " + shown.Count);
            for (int i = 1; i < shown.Count; i++) Check.True(shown[i] > shown[i - 1], "frame clocks increase");
            Check.Equal(18L * 4, p.Stats.ShownFrames + p.Stats.DroppedFrames, "every frame is shown or dropped");
        }
    }
}

namespace Mfruntime.Tests
{
    public static class MediaTests
    {
        [Test]
        public static void RowsFlipPixelsRepackAndChannelsMixDown()
        {
            var rgb = new byte[] { 1, 2, 3, 4, 5, 6, /* row 2 */ 7, 8, 9, 10, 11, 12 };  // 2×2 RGB
            var flipped = Media.FlipRows(rgb, 2, 2, 3);
            Check.Equal("7,8,9,10,11,12,1,2,3,4,5,6", string.Join(",", flipped), "rows swapped");
            Check.Equal(string.Join(",", rgb), string.Join(",", Media.FlipRows(flipped, 2, 2, 3)), "flip twice = same");
            var rgba = new byte[] { 7, 8, 9, 255, 10, 11, 12, 255, 1, 2, 3, 255, 4, 5, 6, 255 };  // bottom row first
            Check.Equal(string.Join(",", rgb), string.Join(",", Media.RgbFromRgba(rgba, 2, 2, bottomUp: true)), "RGBA bottom-up → RGB top-down");
            Check.Throws<ArgumentException>(() => Media.RgbFromRgba(new byte[5], 2, 2, false), "RGBA", "wrong size");
            Check.Equal("0.5,-1", string.Join(",", Media.Mono(new[] { 1f, 0f, -1f, -1f }, 2)), "stereo → mono");
            Check.Throws<ArgumentException>(() => Media.Mono(new float[3], 2), "multiple", "odd stereo");
        }
    }
}

namespace Mfruntime.Tests
{
    /// <summary>Rig frames in the player: due on the audio clock with the video frame of the same index, and rig-only
    /// chunks (no pixels) playing their audio and rig frames.</summary>
    public static class PlayerRigTests
    {
        private const int Spc = 2560, Controls = 28;

        /// <summary>A 2×2 chunk whose frame i carries its stream frame number n = clock / 640 in every video byte (mod
        /// 256) and as rig value 0 (value c of the row is n + c / 100).</summary>
        private static StreamChunk Chunk(long utterance, long seq, long clock, bool video = true, bool rig = true, bool eou = false)
        {
            const int frames = 4;
            var pixels = new byte[video ? frames * 12 : 0];
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(clock / 640 + i / 12);
            float[] values = null;
            if (rig)
            {
                values = new float[frames * Controls];
                for (int i = 0; i < values.Length; i++) values[i] = clock / 640 + i / Controls + i % Controls / 100f;
            }
            return new StreamChunk
            {
                Character = "npc", Utterance = utterance, Seq = seq, Clock = clock, Pts = clock / 16000.0,
                Width = 2, Height = 2, Frames = frames, Fps = 25, SampleRate = 16000, Samples = Spc, Eou = eou,
                HasVideo = video, Video = pixels, Pcm = Enumerable.Repeat(0.5f, Spc).ToArray(),
                Controls = rig ? Controls : 0, RigVersion = 1, Rig = values,
            };
        }

        private static Player At16k() { return new Player(new PlayerSettings { OutputRate = 16000, PrebufferMs = 0 }); }

        [Test]
        public static void RigFramesComeDueWithTheirVideoFramesOnTheAudioClock()
        {
            var p = new Player(new PlayerSettings { OutputRate = 44100, PrebufferMs = 40 });
            for (int s = 0; s < 10; s++) p.Push(Chunk(1, s, (long)s * Spc, eou: s == 9));
            var rng = new Random(3);
            int pairs = 0;
            long lastRig = -1;
            for (int k = 0; k < 400 && p.QueuedRigFrames + p.QueuedFrames > 0; k++)
            {
                p.ReadAudio(new float[2 * 1024], 0, rng.Next(64, 1024), 2);
                VideoFrame v;
                RigFrame r;
                bool any = p.TakeFrames(out v, out r);
                Check.Equal(any, v != null, "a new video frame exactly when there is anything new");
                Check.Equal(v != null, r != null, "a rig frame exactly when a video frame");
                if (v == null) continue;
                pairs++;
                Check.Equal(v.Clock, r.Clock, "the same clock");
                long n = v.Clock / 640;
                Check.Equal((byte)n, v.Rgb[0], "the video frame is frame " + n);
                Check.Equal((float)n, r.Values[0], "the rig frame is the same frame");
                Check.Near(n + 0.27, r.Values[27], 1e-4, "and its whole row");
                Check.True(r.Clock <= p.AudioClock && r.Clock > lastRig, "due, and after the one before");
                Check.True(r.Utterance == 1 && r.RigVersion == 1 && r.Values.Length == Controls, "utterance, version, row length");
                lastRig = r.Clock;
            }
            Check.True(pairs > 10, "frames were taken: " + pairs);
            var st = p.Stats;
            Check.Equal(40L, st.ShownRigFrames + st.DroppedRigFrames, "every rig frame is given or dropped");
            Check.Equal(st.ShownFrames, st.ShownRigFrames, "as many as video frames");
            Check.Equal(st.DroppedFrames, st.DroppedRigFrames, "and dropped alike");

            // Taken one at a time, at the same clock: the same index too.
            var q = At16k();
            q.Push(Chunk(1, 0, 0));
            q.ReadAudio(new float[700], 0, 700, 1);
            var video = q.TakeFrame();
            var rigFrame = q.TakeRigFrame();
            Check.True(video.Clock == 640 && rigFrame.Clock == 640, "frame 1 of both at clock 700");
            Check.True(q.TakeRigFrame() == null && q.TakeFrame() == null, "then nothing new until the next frame time");
        }

        [Test]
        public static void RigOnlyChunksPlayTheirAudioAndRigFrames()
        {
            var p = At16k();
            p.Push(Chunk(1, 0, 0, video: false));
            p.Push(Chunk(1, 1, Spc, video: false, eou: true));
            Check.Equal(0, p.QueuedFrames, "no video frames");
            Check.Equal(8, p.QueuedRigFrames, "eight rig frames");
            var clocks = new List<long>();
            var audio = new List<float>();
            for (int k = 0; k < 12; k++)
            {
                var buf = new float[k == 0 ? 320 : 640];  // look mid-frame: one new frame per frame period
                p.ReadAudio(buf, 0, buf.Length, 1);
                audio.AddRange(buf);
                Check.True(p.TakeFrame() == null, "never a video frame");
                var r = p.TakeRigFrame();
                if (r != null) clocks.Add(r.Clock);
            }
            Check.Equal("0,640,1280,1920,2560,3200,3840,4480", string.Join(",", clocks), "one rig frame per frame time, in order");
            Check.True(audio.Count(v => Math.Abs(v - 0.5f) < 1e-3) > 2 * Spc - 100, "the voice plays");
            PlayerEvent e;
            var events = new List<string>();
            while (p.TryGetEvent(out e)) events.Add(e.ToString());
            Check.Equal("UtteranceStarted 1|UtteranceEnded 1", string.Join("|", events), "a line like any other");
            Check.Equal(0L, p.Stats.DroppedRigFrames, "none dropped");

            // A cut drops the rest of its rig frames; a chunk without a rig part has none.
            var c = At16k();
            c.Push(Chunk(2, 0, 0, video: false));
            c.Push(Chunk(2, 1, Spc, video: false));
            c.ReadAudio(new float[700], 0, 700, 1);
            c.Cut(2);
            var due = c.TakeRigFrame();
            Check.True(due != null && due.Clock == 640, "the frame due at the cut may still apply");
            Check.Equal(0, c.QueuedRigFrames, "the rest are gone");
            var plain = At16k();
            plain.Push(Chunk(1, 0, 0, rig: false));
            plain.ReadAudio(new float[100], 0, 100, 1);
            Check.True(plain.TakeFrame() != null && plain.TakeRigFrame() == null, "controls 0: video frames only");
            var reset = At16k();
            reset.Push(Chunk(1, 0, 0));
            reset.Reset();
            Check.Equal(0, reset.QueuedRigFrames, "reset drops rig frames");
        }

        [Test]
        public static void ChunksWhosePartsDisagreeWithTheirHeaderAreRefused()
        {
            var p = At16k();
            var shortRig = Chunk(1, 0, 0);
            shortRig.Rig = new float[10];
            Check.Throws<ArgumentException>(() => p.Push(shortRig), "rig", "a rig of the wrong size");
            var shortVideo = Chunk(1, 0, 0);
            shortVideo.Video = new byte[5];
            Check.Throws<ArgumentException>(() => p.Push(shortVideo), "video", "video of the wrong size");
            Check.Equal(0L, p.Stats.Chunks, "neither was queued");
        }
    }
}
