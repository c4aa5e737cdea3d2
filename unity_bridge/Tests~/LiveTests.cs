// Against a real mf serve (started by the repository's pytest suite): say a line and receive all of it (video, audio
// and rig frames), play it on the audio clock, interrupt a second line, survive a malformed request and a server
// restart; then (LiveRigTests) a line in rig-only mode.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;

namespace Mfruntime.Tests
{
    public static class LiveTests
    {
        public sealed class Server
        {
            public readonly string Control, Stream;
            public Server(string control, string stream) { Control = control; Stream = stream; }
        }

        private static MfClient Connect(Server s, List<StreamChunk> sink, int outputRate = 48000)
        {
            var client = new MfClient(new ClientSettings
            {
                ControlAddress = s.Control, StreamAddress = s.Stream, RequestTimeoutMs = 60000,
                Player = new PlayerSettings { OutputRate = outputRate },
            });
            if (sink != null) client.ChunkReceived += c => { lock (sink) sink.Add(c); };
            client.Connect();
            client.Ping();
            Thread.Sleep(300);  // a SUB connection needs a moment before the server sends to it
            return client;
        }

        private static List<StreamChunk> Until(List<StreamChunk> sink, long utterance, int seconds)
        {
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed.TotalSeconds < seconds)
            {
                lock (sink)
                {
                    var mine = sink.Where(c => c.Utterance == utterance).ToList();
                    if (mine.Any(c => c.Eou)) return mine;
                }
                Thread.Sleep(10);
            }
            throw new CheckFailed("utterance " + utterance + " did not end within " + seconds + " s");
        }

        [Test]
        public static void SayReceivesEveryChunkAndPlaysItOnTheAudioClock(Server s)
        {
            var sink = new List<StreamChunk>();
            using (var client = Connect(s, sink))
            {
                var pong = client.Ping();
                Check.Equal(3L, (long)pong["protocol"], "protocol version");
                Check.Equal(string.Join(",", RigControls.Names), string.Join(",", client.RigControlNames()),
                            "the server names the rig values as RigControls.Names does");
                Check.Equal((long)RigControls.Version, (long)((Dictionary<string, object>)pong["rig"])["version"], "rig version");
                var state = client.State();
                long width = (long)state["width"];
                Check.True((bool)state["has_rig"], "the bundled model has a rig head");
                var outputs = MfClient.Outputs(state);
                Check.True(outputs.Video && outputs.Rig, "video and rig frames by default: " + outputs);
                var watch = Stopwatch.StartNew();
                long u = client.Say("Hello from the Unity bridge. The face and the voice arrive together.");
                double first = -1;
                while (first < 0 && watch.Elapsed.TotalSeconds < 60)
                {
                    lock (sink) if (sink.Count > 0) first = watch.Elapsed.TotalMilliseconds;
                    Thread.Sleep(1);
                }
                Console.WriteLine("say -> first chunk: " + first.ToString("F1") + " ms");
                var got = Until(sink, u, 120);
                Check.True(got.Count >= 3, "a sentence is several chunks: " + got.Count);
                for (int i = 0; i < got.Count; i++)
                {
                    var c = got[i];
                    Check.Equal((long)i, c.Seq, "seq runs from 0 without gaps");
                    Check.True(c.Width == width && c.Height == width && c.Frames == 4 && c.Samples == 2560 && c.Video.Length == 4 * width * width * 3,
                               "chunk " + i + " shape");
                    Check.Equal(i == got.Count - 1, c.Eou, "only the last chunk ends the utterance");
                    Check.True(!c.Interrupted, "not interrupted");
                    if (i > 0) Check.Equal(got[i - 1].Clock + got[i - 1].Samples, c.Clock, "clocks are continuous");
                    Check.Equal(c.Pts, c.Clock / (double)c.SampleRate, "pts is exactly the sample clock over the rate");
                    Check.True(c.Pcm.All(v => v >= -1 && v <= 1), "pcm in [-1, 1]");
                    Check.True(c.Steps >= 1 && c.Steps <= 50, "chunk " + i + " says the steps it was made with (" + c.Steps + ")");
                    Check.True(c.HasVideo && c.Controls == RigControls.Names.Length && c.RigVersion == RigControls.Version &&
                               c.Rig.Length == c.Frames * c.Controls, "chunk " + i + " carries a rig frame per video frame");
                    for (int f = 0; f < c.Frames; f++)
                    {
                        double visemes = 0;
                        for (int k = RigControls.Face.Length; k < c.Controls; k++) visemes += c.RigValue(f, k);
                        Check.Near(1.0, visemes, 1e-3, "chunk " + i + " frame " + f + ": the viseme weights sum to 1");
                        for (int k = 0; k < RigControls.BlendshapeFaceControls; k++)
                            Check.True(c.RigValue(f, k) >= 0 && c.RigValue(f, k) <= 1, RigControls.Names[k] + " is a weight in 0-1: " + c.RigValue(f, k));
                    }
                }
                double rms = Math.Sqrt(got.SelectMany(c => c.Pcm).Average(v => (double)v * v));
                Check.True(rms > 0.01, "the line is audible: RMS " + rms);
                // Drive the Player like an engine's audio thread (48 kHz stereo, 1024-frame blocks) and its frame loop.
                var p = client.Player;
                var shown = new List<long>();
                var rigShown = new List<long>();
                var block = new float[2 * 1024];
                long startClock = got[0].Clock, endClock = got.Last().Clock + got.Last().Samples;
                var events = new List<PlayerEvent>();
                for (int b = 0; b < 2000 && !events.Any(e => e.Kind == PlayerEventKind.UtteranceEnded); b++)
                {
                    p.ReadAudio(block, 0, 1024, 2);
                    VideoFrame f;
                    RigFrame r;
                    p.TakeFrames(out f, out r);
                    if (f != null) shown.Add(f.Clock);
                    if (r != null) rigShown.Add(r.Clock);
                    PlayerEvent e;
                    while (p.TryGetEvent(out e)) events.Add(e);
                }
                Check.Equal("UtteranceStarted " + u + "|UtteranceEnded " + u, string.Join("|", events), "player events");
                Check.Equal(string.Join(",", shown), string.Join(",", rigShown), "each rig frame came with its video frame");
                Check.Equal(endClock - 1, p.AudioClock, "the audio clock reached the end of the line");
                Check.True(shown.Count >= got.Count * 4 / 2 && shown.Count <= got.Count * 4, "frames shown: " + shown.Count);
                for (int i = 1; i < shown.Count; i++) Check.True(shown[i] > shown[i - 1], "frames in order");
                Check.True(shown[0] >= startClock && shown.Last() <= endClock, "frames within the line");
                Check.Equal(0L, p.Stats.Underruns, "no underrun: the whole line was buffered");
                Check.Equal(0L, client.BadMessages, "no bad messages");
            }
        }

        [Test]
        public static void InterruptEndsTheSecondLineAtOnce(Server s)
        {
            var sink = new List<StreamChunk>();
            using (var client = Connect(s, sink))
            {
                long u = client.Say("This is a much longer line that will not be allowed to finish, because the test cuts it off " +
                                    "right after the first chunk arrives, and then checks how it ends.");
                var watch = Stopwatch.StartNew();
                while (watch.Elapsed.TotalSeconds < 60) { lock (sink) if (sink.Any(c => c.Utterance == u)) break; Thread.Sleep(1); }
                var cut = client.Interrupt();
                Check.Equal((long?)u, cut, "the server names the utterance it cut");
                var got = Until(sink, u, 60);
                var last = got.Last();
                Check.True(last.Eou && last.Interrupted, "it ends with eou and interrupted");
                Check.True(got.Count < 12, "it stopped early: " + got.Count + " chunks");
                Check.Equal(got.Count - 1, got.Count(c => !c.Eou), "exactly one end");
                var block = new float[1024];
                client.Player.ReadAudio(block, 0, 1024, 1);
                Check.True(client.Player.Sounding != u, "the local player dropped the line");
                var state = client.State();
                Check.True(!(bool)state["speaking"] && (long)state["next_seq"] == 0, "idle afterwards");
            }
        }

        [Test]
        public static void BadRequestsGetClearErrorsAndTheClientGoesOn(Server s)
        {
            using (var client = Connect(s, null))
            {
                Check.Throws<ServerException>(() => client.Request("say", Protocol.F("character", "default"), Protocol.F("text", "   ")), "text", "blank text");
                Check.Throws<ServerException>(() => client.Request("dance"), "unknown op", "unknown op");
                Check.Throws<ArgumentException>(() => client.Say(""), "text", "empty text is refused before sending");
                Check.Throws<ArgumentException>(() => client.SetCharacter(new byte[5], 2, 2), "RGB", "wrong image size");
                Check.Throws<ArgumentException>(() => client.SetCharacterImage(new byte[] { 1 }, null, "3d"), "renderer", "unknown renderer");
                Check.Throws<ServerException>(() => client.SetCharacterImage(new byte[] { 1, 2, 3 }, null, "auto", 320), "image", "the fields reach the server, which reads the image");
                Check.Throws<ServerException>(() => client.Drive(new float[] { 5f, -5f, 0f }, 16000), null, "audio far outside [-1, 1]");
                Check.Equal(3L, (long)client.Ping()["protocol"], "still answering");
                Check.Throws<ServerException>(() => client.Request("set_outputs", Protocol.F("character", "default"), Protocol.F("video", 0L)), "video",
                                              "set_outputs with a number for a bool");
                var swapped = new MfClient(new ClientSettings { ControlAddress = s.Stream, StreamAddress = s.Control, ConnectTimeoutMs = 1500 });
                Check.Throws<TransportException>(() => swapped.Ping(), "right port", "the stream port given as the control address");
                swapped.Dispose();
                var lost = new MfClient(new ClientSettings { ControlAddress = "tcp://127.0.0.1:1", RequestTimeoutMs = 300 });
                Check.Throws<TransportException>(() => lost.Ping(), "not connected", "nothing listening");
                lost.Dispose();
            }
        }

        [Test]
        public static void ReconnectsAfterTheServerRestarts(Server s)
        {
            var sink = new List<StreamChunk>();
            using (var client = Connect(s, sink))
            {
                int reconnected = 0;
                client.Reconnected += () => Interlocked.Increment(ref reconnected);
                Console.WriteLine("RESTART-SERVER");  // the test driver restarts mf serve on the same ports
                Console.Out.Flush();
                string line = Console.In.ReadLine();
                Check.Equal("restarted", line, "the driver's answer");
                var watch = Stopwatch.StartNew();
                long u = -1;
                while (u < 0)
                {
                    try { u = client.Say("Back again."); }
                    catch (TransportException) { if (watch.Elapsed.TotalSeconds > 30) throw; }
                    catch (TimeoutException) { if (watch.Elapsed.TotalSeconds > 30) throw; }
                }
                Check.Equal(1L, u, "a restarted server counts utterances from 1 again");
                var got = Until(sink, u, 60);
                Check.True(got.Last().Eou, "the line arrives whole after the restart");
                Check.True(reconnected >= 1 && client.Reconnects >= 1, "the client saw the reconnect");
            }
        }
    }
}

namespace Mfruntime.Tests
{
    public static class LiveRigTests
    {
        [Test]
        public static void RigOnlyModeStreamsAudioAndRigFramesWithoutPixels(LiveTests.Server s)
        {
            var sink = new List<StreamChunk>();
            var client = new MfClient(new ClientSettings { ControlAddress = s.Control, StreamAddress = s.Stream, RequestTimeoutMs = 60000 });
            client.ChunkReceived += c => { lock (sink) sink.Add(c); };
            client.Connect();
            try
            {
                var rigOnly = client.SetOutputs(video: false);
                Check.True(!rigOnly.Video && rigOnly.Rig, "rig-only: " + rigOnly);
                Check.True(!MfClient.Outputs(client.State()).Video, "state says so too");
                Check.True(!client.SetOutputs().Video, "set_outputs with neither field changes nothing");
                Thread.Sleep(300);  // the SUB connection
                long u = client.Say("Only the rig this time.");
                var watch = Stopwatch.StartNew();
                List<StreamChunk> got = null;
                while (got == null && watch.Elapsed.TotalSeconds < 120)
                {
                    lock (sink) if (sink.Any(c => c.Utterance == u && c.Eou)) got = sink.Where(c => c.Utterance == u).ToList();
                    Thread.Sleep(10);
                }
                Check.True(got != null && got.Count >= 2, "the rig-only line arrived whole");
                foreach (var c in got)
                    Check.True(!c.HasVideo && c.Video.Length == 0 && c.Frames == 4 && c.Samples == 2560 && c.Width > 0 &&
                               c.Controls == RigControls.Names.Length && c.Rig.Length == c.Frames * c.Controls,
                               "seq " + c.Seq + ": no pixels, 4 rig frames, the voice");
                // Played like an engine: the voice and the rig frames, no video frames.
                var p = client.Player;
                var rig = new List<long>();
                var events = new List<string>();
                var block = new float[1024];
                for (int b = 0; b < 2000 && !events.Any(e => e.StartsWith("UtteranceEnded")); b++)
                {
                    p.ReadAudio(block, 0, 1024, 1);
                    VideoFrame f;
                    RigFrame r;
                    p.TakeFrames(out f, out r);
                    Check.True(f == null, "no video frame in rig-only mode");
                    if (r != null) rig.Add(r.Clock);
                    PlayerEvent e;
                    while (p.TryGetEvent(out e)) events.Add(e.ToString());
                }
                Check.Equal("UtteranceStarted " + u + "|UtteranceEnded " + u, string.Join("|", events), "the line plays");
                Check.True(rig.Count >= got.Count * 4 / 2, "rig frames applied: " + rig.Count + " of " + got.Count * 4);
                for (int i = 1; i < rig.Count; i++) Check.True(rig[i] > rig[i - 1], "in order");
                var noRig = client.SetOutputs(rig: false);
                Check.True(!noRig.Rig && !noRig.Video, "rig frames can be turned off too: " + noRig);
            }
            finally
            {
                var back = client.SetOutputs(video: true, rig: true);
                client.Dispose();
                Check.True(back.Video && back.Rig, "back to video and rig: " + back);
            }
        }
        [Test]
        public static void AListeningCharacterStreamsIdleChunksUntilToldToStop(LiveTests.Server s)
        {
            var sink = new List<StreamChunk>();
            var client = new MfClient(new ClientSettings { ControlAddress = s.Control, StreamAddress = s.Stream, RequestTimeoutMs = 60000 });
            client.ChunkReceived += c => { lock (sink) sink.Add(c); };
            client.Connect();
            try
            {
                Thread.Sleep(300);  // the SUB connection
                Check.Equal(2, client.SetSteps(2, 1), "set_steps with a floor");
                var perCharacter = (Dictionary<string, object>)client.Request("stats", Protocol.F("character", "default"))["characters"];
                Check.Equal(1L, Convert.ToInt64(((Dictionary<string, object>)perCharacter["default"])["min_steps"]), "the floor is in stats");
                Check.Equal(2, client.SetSteps(2, 2), "and back");
                Check.True(client.SetIdle(true), "idle on");
                var watch = Stopwatch.StartNew();
                List<StreamChunk> got = null;
                while (got == null && watch.Elapsed.TotalSeconds < 60)
                {
                    lock (sink) if (sink.Count(c => !c.Eou) >= 4) got = sink.ToList();
                    Thread.Sleep(10);
                }
                Check.True(got != null, "idle chunks arrive");
                Check.True((bool)client.State()["idling"], "state says it is listening");
                foreach (var c in got.Where(c => c.Samples > 0))
                    Check.True(c.Pcm.All(v => v == 0f) && c.Controls == RigControls.Names.Length, "seq " + c.Seq + ": silent, with rig frames");
                Check.True(!client.SetIdle(false), "idle off");
                long u = got[0].Utterance;
                watch.Restart();
                bool ended = false;
                while (!ended && watch.Elapsed.TotalSeconds < 30)
                {
                    lock (sink) ended = sink.Any(c => c.Utterance == u && c.Eou);
                    Thread.Sleep(10);
                }
                Check.True(ended, "the idle utterance ends when listening is turned off");
            }
            finally
            {
                client.Dispose();
            }
        }
    }
}
