// Playback of one character's stream: a jitter buffer keyed on the integer sample clock, resampling to the engine's
// output rate, and video and rig frames presented on the audio clock. Engine-free and thread-safe: the network thread
// calls Push, the engine's audio thread ReadAudio, and its main thread TakeFrame / TakeRigFrame / TakeFrames and
// TryGetEvent.
//
// Rules (the C++ client's Player follows the same ones):
//  - Clock: chunk.Clock = round(pts × sample_rate); frame i of a chunk is due at Clock + i·sample_rate/fps.
//  - An utterance starts playing once PrebufferMs of it are buffered, or its end has arrived.
//  - Within an utterance a seq gap (lost chunk) plays as silence up to the next chunk's clock; an empty buffer
//    mid-utterance (underrun) plays silence and the clock holds, so the face holds too.
//  - A chunk wholly before what was already queued is late: dropped. So are chunks of an utterance that was cut.
//  - A chunk of a newer utterance while the older one has no end, or an interrupted end, means the server superseded
//    it: the older one fades out (FadeMs) and ends as interrupted, then the newer one plays. An older line that
//    ended normally plays out first.
//  - TakeFrame gives the newest frame whose clock the audio has reached; older unshown frames are dropped, so
//    frames never show out of order or ahead of the voice. Rig frames follow the same rule on the same clock
//    (TakeRigFrame), so rig frame i of a chunk is given while video frame i is; TakeFrames gives both from one reading
//    of the clock. A rig-only chunk (no pixels) plays its audio and rig frames and has no video frames.
//  - Events: UtteranceStarted when its first sample plays, UtteranceEnded when its last sample (or end marker)
//    has played, or when it is cut or superseded (then also for a line never heard, so a caller waiting on the id
//    that Say returned always sees its end).
using System;
using System.Collections.Generic;

namespace Mfruntime
{
    public sealed class PlayerSettings
    {
        /// <summary>Rate of the PCM the stream carries (16000 for the bundled model).</summary>
        public int SourceRate = 16000;
        /// <summary>The engine's output rate (Unity: AudioSettings.outputSampleRate).</summary>
        public int OutputRate = 48000;
        /// <summary>Audio buffered before an utterance starts: absorbs network and generation jitter.</summary>
        public int PrebufferMs = 80;
        /// <summary>Fade-out when an utterance is cut or superseded, so it ends without a click.</summary>
        public int FadeMs = 5;
        /// <summary>How long the engine takes to play what ReadAudio returned (its output buffers); frames are
        /// shown that much later so the lips match what is heard. Unity: DSP buffer length × count.</summary>
        public int OutputLatencyMs = 0;
        /// <summary>Longest silence played for lost chunks; a larger jump in the clock is skipped, not waited out.</summary>
        public int MaxGapMs = 2000;
        /// <summary>Most audio (with its frames) queued ahead of playback; chunks beyond it are dropped and counted
        /// (OverflowChunks). Only reached when nothing plays the audio (the server runs ahead of real time).</summary>
        public int MaxQueuedSeconds = 120;
    }

    public enum PlayerEventKind { UtteranceStarted, UtteranceEnded }

    public struct PlayerEvent
    {
        public PlayerEventKind Kind;
        public long Utterance;
        /// <summary>For UtteranceEnded: it was cut short (interrupt, a newer utterance, or generation failed).</summary>
        public bool Interrupted;
        public override string ToString() { return Kind + " " + Utterance + (Interrupted ? " (interrupted)" : ""); }
    }

    /// <summary>A video frame to show: RGB bytes, rows top first.</summary>
    public sealed class VideoFrame
    {
        public long Clock, Utterance;
        public int Width, Height;
        public byte[] Rgb;
    }

    /// <summary>A rig frame to apply: one row of the stream's rig values (Values[c] is named by the c-th name of the
    /// control list of RigVersion: RigControls.Names), due at Clock like the video frame of the same index.</summary>
    public sealed class RigFrame
    {
        public long Clock, Utterance;
        public int RigVersion;
        public float[] Values;
    }

    public sealed class PlayerStats
    {
        public long Chunks, LateChunks, LostChunks, IgnoredChunks, OverflowChunks, ShownFrames, DroppedFrames, Underruns;
        public long ShownRigFrames, DroppedRigFrames;
        public override string ToString()
        {
            return string.Format("chunks {0}, late {1}, lost {2}, ignored {3}, overflow {4}, frames shown {5}, dropped {6}, underruns {7}, " +
                                 "rig frames shown {8}, dropped {9}", Chunks, LateChunks, LostChunks, IgnoredChunks, OverflowChunks,
                                 ShownFrames, DroppedFrames, Underruns, ShownRigFrames, DroppedRigFrames);
        }
    }

    public sealed class Player
    {
        private const int FeedPiece = 64;  // source samples moved into the resampler at a time (4 ms at 16 kHz)

        private enum SegKind { Start, Audio, End }

        /// <summary>A piece of the play-order queue: an utterance's start, PCM (or silence: Pcm null), or its end.</summary>
        private sealed class Segment
        {
            public SegKind Kind;
            public long Utterance, Clock;
            public float[] Pcm;
            public int Length, Offset;  // samples in this piece, samples already fed to the resampler
            public bool Interrupted;
        }

        /// <summary>At resampler input index Index, the clock becomes Clock (and runs on unless Hold), and Event fires.</summary>
        private struct Marker
        {
            public long Index, Clock;
            public bool Hold;
            public PlayerEvent? Event;
        }

        public readonly PlayerSettings Settings;
        private readonly object gate = new object();
        private readonly Resampler resampler;
        private readonly LinkedList<Segment> queue = new LinkedList<Segment>();
        private readonly Queue<Marker> markers = new Queue<Marker>();
        private readonly List<VideoFrame> frames = new List<VideoFrame>();
        private readonly List<RigFrame> rigFrames = new List<RigFrame>();
        private readonly Queue<PlayerEvent> events = new Queue<PlayerEvent>();
        private readonly HashSet<long> startedUtterances = new HashSet<long>();
        private readonly PlayerStats stats = new PlayerStats();
        private const int MaxEvents = 1024;  // unpolled events beyond this drop the oldest
        private readonly int prebuffer, fadeOut, maxGap, latency, maxQueued;
        private long muteBefore;  // resampler input before this index is being cut: it fades, then plays silent
        private int fadeLeft, fadeTotal = 1;

        // The newest utterance received (the one being queued), and its state.
        private long current, expectSeq, endClock, buffered;
        private bool currentEnded, currentReady, currentInterrupted;
        private long cut;  // utterances ≤ cut are ignored
        // The audio clock: at resampler input index baseIndex it was baseClock.
        private long baseIndex, baseClock = -1;  // -1: nothing has played yet
        private bool hold = true, inUnderrun;
        private long fedEnd;  // the clock just after the last sample fed to the resampler
        private readonly HashSet<long> fedStarts = new HashSet<long>();  // utterances whose start was fed
        private readonly HashSet<long> ended = new HashSet<long>();  // utterances whose UtteranceEnded was raised
        private long sounding;  // the utterance whose samples are playing (0: none)

        public Player(PlayerSettings settings = null)
        {
            Settings = settings ?? new PlayerSettings();
            if (Settings.SourceRate <= 0 || Settings.OutputRate <= 0) throw new ArgumentException("sample rates must be positive");
            resampler = new Resampler(Settings.SourceRate, Settings.OutputRate);
            prebuffer = (int)((long)Settings.PrebufferMs * Settings.SourceRate / 1000);
            fadeOut = Math.Max(1, (int)((long)Settings.FadeMs * Settings.OutputRate / 1000));
            maxGap = (int)((long)Settings.MaxGapMs * Settings.SourceRate / 1000);
            latency = (int)((long)Math.Max(0, Settings.OutputLatencyMs) * Settings.SourceRate / 1000);
            maxQueued = (int)Math.Min(int.MaxValue, (long)Settings.MaxQueuedSeconds * Settings.SourceRate);
        }

        /// <summary>The sample clock (source rate) of the audio playing now; it holds on the last played sample while
        /// nothing plays, and is -1 before anything has played.</summary>
        public long AudioClock { get { lock (gate) return Clock(); } }

        /// <summary>The utterance whose audio is playing (0 when none).</summary>
        public long Sounding { get { lock (gate) return sounding; } }

        public PlayerStats Stats
        {
            get
            {
                lock (gate)
                    return new PlayerStats
                    {
                        Chunks = stats.Chunks, LateChunks = stats.LateChunks, LostChunks = stats.LostChunks,
                        IgnoredChunks = stats.IgnoredChunks, OverflowChunks = stats.OverflowChunks, ShownFrames = stats.ShownFrames,
                        DroppedFrames = stats.DroppedFrames, Underruns = stats.Underruns,
                        ShownRigFrames = stats.ShownRigFrames, DroppedRigFrames = stats.DroppedRigFrames,
                    };
            }
        }

        private long Clock()
        {
            return hold ? baseClock : baseClock + (resampler.InputPosition - baseIndex);
        }

        /// <summary>Queue a decoded chunk (any thread). Chunks of other characters must be filtered before.</summary>
        public void Push(StreamChunk c)
        {
            if (c.SampleRate != Settings.SourceRate)
                throw new ArgumentException("the stream's PCM is " + c.SampleRate + " Hz, this player was set up for " + Settings.SourceRate);
            int frameBytes = c.Width * c.Height * 3;
            if (c.HasVideo && (c.Video == null || c.Video.Length != (long)c.Frames * frameBytes))
                throw new ArgumentException("the chunk's video is " + (c.Video == null ? 0 : c.Video.Length) + " bytes, not " + c.Frames + " frames of " + frameBytes);
            bool hasRig = c.Controls > 0 && c.Rig != null;
            if (hasRig && c.Rig.Length != (long)c.Frames * c.Controls)
                throw new ArgumentException("the chunk's rig has " + c.Rig.Length + " values, not " + c.Frames + " frames of " + c.Controls);
            // Copied out before the lock the audio thread needs.
            var newFrames = new VideoFrame[c.HasVideo ? c.Frames : 0];
            for (int i = 0; i < newFrames.Length; i++)
            {
                var rgb = new byte[frameBytes];
                Buffer.BlockCopy(c.Video, i * frameBytes, rgb, 0, frameBytes);
                newFrames[i] = new VideoFrame { Clock = c.FrameClock(i), Utterance = c.Utterance, Width = c.Width, Height = c.Height, Rgb = rgb };
            }
            var newRig = new RigFrame[hasRig ? c.Frames : 0];
            for (int i = 0; i < newRig.Length; i++)
            {
                var values = new float[c.Controls];
                Array.Copy(c.Rig, i * c.Controls, values, 0, c.Controls);
                newRig[i] = new RigFrame { Clock = c.FrameClock(i), Utterance = c.Utterance, RigVersion = c.RigVersion, Values = values };
            }
            lock (gate)
            {
                stats.Chunks++;
                if (c.Utterance <= cut || c.Utterance < current) { stats.IgnoredChunks++; return; }
                if (c.Utterance > current)
                {
                    // Superseded: the server ended the older line early (no end yet, or an interrupted end, which the
                    // server sends right before the newer line's chunks): don't make the newer one wait behind its
                    // buffered tail. An older line that ended normally plays out and the newer one follows it.
                    if (current != 0 && (!currentEnded || currentInterrupted)) Truncate(current);
                    current = c.Utterance;
                    expectSeq = c.Seq;
                    endClock = c.Clock;
                    buffered = 0;
                    currentEnded = currentReady = currentInterrupted = false;
                    queue.AddLast(new Segment { Kind = SegKind.Start, Utterance = current, Clock = c.Clock });
                }
                else if (currentEnded || c.Clock < endClock)
                {
                    stats.LateChunks++;
                    return;
                }
                if (c.Samples > 0 && Queued() + c.Samples > maxQueued) { stats.OverflowChunks++; return; }
                if (c.Seq > expectSeq) stats.LostChunks += c.Seq - expectSeq;
                long gap = c.Clock - endClock;
                if (gap > 0 && gap <= maxGap) Enqueue(null, (int)gap, endClock);  // lost chunks play as silence
                endClock = c.Clock;
                if (c.Samples > 0) Enqueue(c.Pcm, c.Samples, c.Clock);
                frames.AddRange(newFrames);
                rigFrames.AddRange(newRig);
                expectSeq = c.Seq + 1;
                if (c.Eou)
                {
                    currentEnded = true;
                    currentInterrupted = c.Interrupted;
                    queue.AddLast(new Segment { Kind = SegKind.End, Utterance = current, Clock = endClock, Interrupted = c.Interrupted });
                }
                if (currentEnded || buffered >= prebuffer) currentReady = true;
            }
        }

        private void Enqueue(float[] pcm, int n, long clock)
        {
            queue.AddLast(new Segment { Kind = SegKind.Audio, Utterance = current, Clock = clock, Pcm = pcm, Length = n });
            endClock = clock + n;
            buffered += n;
        }

        /// <summary>Cut utterance <paramref name="utterance"/> and every older one now (a local interrupt): their queued
        /// audio fades out, their frames go, later chunks of them are ignored.</summary>
        public void Cut(long utterance)
        {
            lock (gate)
            {
                if (utterance <= cut) return;
                cut = utterance;
                var older = new SortedSet<long>();
                foreach (var s in queue) if (s.Utterance <= utterance) older.Add(s.Utterance);
                if (current != 0 && current <= utterance && !currentEnded) older.Add(current);
                foreach (long u in older) Truncate(u);
                // A line whose chunks have not come yet (Say just returned) ends now too.
                if (utterance > current) EndNow(utterance);
            }
        }

        /// <summary>End utterance u early: drop what is queued of it and its frames; what of it is already in the
        /// resampler fades out over FadeMs and then plays silent; it ends (as interrupted) right there if it was heard.</summary>
        private void Truncate(long u)
        {
            bool lastFed = false;
            for (var node = queue.First; node != null;)
            {
                var next = node.Next;
                if (node.Value.Utterance == u)
                {
                    if (node.Value.Kind == SegKind.Audio && node.Value.Offset > 0) lastFed = true;
                    queue.Remove(node);
                }
                node = next;
            }
            if (!fedStarts.Contains(u) && !startedUtterances.Contains(u))
                EndNow(u);  // never heard: end it now, so whoever waits on this utterance id still sees its end
            else
            {
                // Mute until the resampler's window has left the cut line's last fed sample, fading out over
                // FadeMs or, when less of it is left, over what is left.
                bool fading = muteBefore > resampler.InputPosition;
                muteBefore = resampler.Written + resampler.HalfTaps;
                if (!fading)
                {
                    long left = (resampler.Written - resampler.InputPosition) * Settings.OutputRate / Settings.SourceRate;
                    fadeTotal = fadeLeft = (int)Math.Max(1, Math.Min(fadeOut, left));
                }
                var end = new Segment { Kind = SegKind.End, Utterance = u, Clock = lastFed || sounding == u ? fedEnd : Clock() + 1, Interrupted = true };
                var after = queue.First;
                while (after != null && after.Value.Utterance <= u) after = after.Next;
                if (after != null) queue.AddBefore(after, end); else queue.AddLast(end);
            }
            long now = Clock();
            frames.RemoveAll(f => f.Utterance == u && f.Clock > now);
            rigFrames.RemoveAll(f => f.Utterance == u && f.Clock > now);
            if (u == current) currentEnded = true;
        }

        private void EndNow(long u)
        {
            if (ended.Add(u)) Raise(new PlayerEvent { Kind = PlayerEventKind.UtteranceEnded, Utterance = u, Interrupted = true });
        }

        private void Raise(PlayerEvent e)
        {
            if (events.Count >= MaxEvents) events.Dequeue();
            events.Enqueue(e);
            if (ended.Count > 512) ended.RemoveWhere(x => x < current - 256);  // ids far behind can't come back
        }

        /// <summary>Source samples queued and not yet played.</summary>
        private long Queued()
        {
            long n = resampler.Written - resampler.InputPosition;
            foreach (var s in queue) if (s.Kind == SegKind.Audio) n += s.Length - s.Offset;
            return n;
        }

        /// <summary>Forget everything (after a reconnect: the server may have restarted, so clocks and ids restart).</summary>
        public void Reset()
        {
            lock (gate)
            {
                // Every line that has begun and not ended ends now (interrupted), so nobody waits on it forever.
                var open = new SortedSet<long>(startedUtterances);
                open.UnionWith(fedStarts);
                foreach (var seg in queue) open.Add(seg.Utterance);
                if (current != 0 && !currentEnded) open.Add(current);
                foreach (long u in open) EndNow(u);
                queue.Clear(); markers.Clear(); frames.Clear(); rigFrames.Clear(); startedUtterances.Clear(); fedStarts.Clear(); ended.Clear();
                resampler.Reset();
                muteBefore = 0; fadeLeft = 0;
                current = expectSeq = endClock = buffered = cut = 0;
                currentEnded = currentReady = false;
                baseIndex = fedEnd = 0;
                baseClock = -1;
                hold = true; inUnderrun = false; sounding = 0;
            }
        }

        /// <summary>Fill <paramref name="count"/> frames of interleaved output at OutputRate (the engine's audio thread).
        /// The mono voice goes to every channel, added to what is there when <paramref name="mix"/> is true.</summary>
        public void ReadAudio(float[] output, int offset, int count, int channels, bool mix = false)
        {
            if (channels < 1) throw new ArgumentException("channels must be ≥ 1");
            if (offset < 0 || count < 0 || offset + (long)count * channels > output.Length) throw new ArgumentOutOfRangeException(nameof(count));
            lock (gate)
            {
                int o = offset;
                for (int k = 0; k < count; k++)
                {
                    while (!resampler.CanRead && Feed()) { }
                    float v = 0f;
                    if (resampler.CanRead)
                    {
                        Apply();
                        bool muted = resampler.InputPosition < muteBefore;  // a cut line's last samples
                        v = resampler.ReadOne();
                        if (muted) v = fadeLeft > 0 ? v * fadeLeft-- / (fadeTotal + 1f) : 0f;
                        inUnderrun = false;
                    }
                    else if (sounding != 0 && !inUnderrun)
                    {
                        inUnderrun = true;
                        stats.Underruns++;
                    }
                    for (int ch = 0; ch < channels; ch++, o++) output[o] = mix ? output[o] + v : v;
                }
                Apply();
            }
        }

        /// <summary>Move the next queued piece into the resampler; false when nothing can be fed now.</summary>
        private bool Feed()
        {
            if (queue.Count == 0) return false;
            var s = queue.First.Value;
            long at = resampler.Written;
            if (s.Kind == SegKind.Start)
            {
                bool ready = s.Utterance != current || currentReady;
                if (!ready) return false;
                queue.RemoveFirst();
                fedStarts.Add(s.Utterance);
                markers.Enqueue(new Marker { Index = at, Clock = s.Clock, Event = new PlayerEvent { Kind = PlayerEventKind.UtteranceStarted, Utterance = s.Utterance } });
                return true;
            }
            if (s.Kind == SegKind.End)
            {
                queue.RemoveFirst();
                fedStarts.Remove(s.Utterance);
                // While idle the clock stays on the last sample that played, so the next utterance's first frame
                // (due at this utterance's end clock) waits for its own audio.
                markers.Enqueue(new Marker { Index = at, Clock = s.Clock - 1, Hold = true, Event = new PlayerEvent { Kind = PlayerEventKind.UtteranceEnded, Utterance = s.Utterance, Interrupted = s.Interrupted } });
                resampler.WriteSilence(resampler.HalfTaps + 1);  // flush the resampler's look-ahead so the tail plays
                return true;
            }
            if (s.Offset == 0) markers.Enqueue(new Marker { Index = at, Clock = s.Clock });
            // Small pieces: what is in the resampler plays out even if the utterance is cut, so keep that short.
            int n = Math.Min(s.Length - s.Offset, FeedPiece);
            if (s.Pcm == null) resampler.WriteSilence(n);
            else resampler.Write(s.Pcm, s.Offset, n);
            s.Offset += n;
            fedEnd = s.Clock + s.Offset;
            if (s.Offset == s.Length) queue.RemoveFirst();
            return true;
        }

        /// <summary>Apply markers the playing position has reached: clock bases and events.</summary>
        private void Apply()
        {
            long pos = resampler.InputPosition;
            while (markers.Count > 0 && markers.Peek().Index <= pos)
            {
                var m = markers.Dequeue();
                baseIndex = m.Index; baseClock = m.Clock; hold = m.Hold;
                if (m.Event.HasValue)
                {
                    var e = m.Event.Value;
                    if (e.Kind == PlayerEventKind.UtteranceStarted) { sounding = e.Utterance; startedUtterances.Add(e.Utterance); }
                    else
                    {
                        if (sounding == e.Utterance) sounding = 0;
                        if (!startedUtterances.Remove(e.Utterance) || !ended.Add(e.Utterance)) continue;
                    }
                    Raise(e);
                }
            }
        }

        /// <summary>The frame to show now, or null when the shown one stays (the engine's main thread).</summary>
        public VideoFrame TakeFrame()
        {
            lock (gate) return TakeVideo(Clock() - latency);
        }

        /// <summary>The rig frame to apply now, or null when the applied one stays (the engine's main thread): the one of
        /// the same frame index as the video frame TakeFrame gives at this clock, also in rig-only mode.</summary>
        public RigFrame TakeRigFrame()
        {
            lock (gate) return TakeRig(Clock() - latency);
        }

        /// <summary>Both at one reading of the clock, so the rig frame is the video frame's own (either may be null: no
        /// new one). Returns whether either is new.</summary>
        public bool TakeFrames(out VideoFrame video, out RigFrame rig)
        {
            lock (gate)
            {
                long now = Clock() - latency;  // what is being heard now
                video = TakeVideo(now);
                rig = TakeRig(now);
                return video != null || rig != null;
            }
        }

        private VideoFrame TakeVideo(long now)
        {
            int due = Due(frames, x => x.Clock, now);
            if (due < 0) return null;
            var f = frames[due];
            stats.DroppedFrames += due;
            stats.ShownFrames++;
            frames.RemoveRange(0, due + 1);
            return f;
        }

        private RigFrame TakeRig(long now)
        {
            int due = Due(rigFrames, x => x.Clock, now);
            if (due < 0) return null;
            var f = rigFrames[due];
            stats.DroppedRigFrames += due;
            stats.ShownRigFrames++;
            rigFrames.RemoveRange(0, due + 1);
            return f;
        }

        /// <summary>Index of the newest frame due at <paramref name="now"/> (clocks increase along the list), or -1.</summary>
        private static int Due<T>(List<T> list, Func<T, long> clock, long now)
        {
            int due = -1;
            while (due + 1 < list.Count && clock(list[due + 1]) <= now) due++;
            return due;
        }

        /// <summary>Frames waiting for their time.</summary>
        public int QueuedFrames { get { lock (gate) return frames.Count; } }

        /// <summary>Rig frames waiting for their time.</summary>
        public int QueuedRigFrames { get { lock (gate) return rigFrames.Count; } }

        /// <summary>Source samples queued and not yet played (of every utterance).</summary>
        public long QueuedSamples
        {
            get
            {
                lock (gate) return Queued();
            }
        }

        public bool TryGetEvent(out PlayerEvent e)
        {
            lock (gate)
            {
                if (events.Count == 0) { e = default(PlayerEvent); return false; }
                e = events.Dequeue();
                return true;
            }
        }
    }
}
