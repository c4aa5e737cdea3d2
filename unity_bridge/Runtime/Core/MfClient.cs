// A client of one character on an mf serve server: control requests on a DEALER socket, the character's chunks
// from the SUB socket into a Player. Engine-free; the Unity component (MfCharacter) is a thin shell over this.
using System;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Mfruntime
{
    public sealed class ClientSettings
    {
        /// <summary>The server's control socket (mf serve --bind).</summary>
        public string ControlAddress = "tcp://127.0.0.1:5555";
        /// <summary>The stream socket; null means the control port + 1 (mf serve's default).</summary>
        public string StreamAddress = null;
        /// <summary>The character this client speaks for and plays.</summary>
        public string Character = "default";
        /// <summary>How long a request waits for the connection to the server before it fails.</summary>
        public int ConnectTimeoutMs = 5000;
        /// <summary>How long a request waits for its reply.</summary>
        public int RequestTimeoutMs = 10000;
        public PlayerSettings Player = new PlayerSettings();
        /// <summary>Feed received chunks to Player. Turn off when only ChunkReceived is used (nothing plays the
        /// Player's audio, so it would only fill up).</summary>
        public bool UsePlayer = true;
        /// <summary>The message transport; null means ZmtpTransport (pure C#, NULL security).</summary>
        public ITransport Transport = null;
    }

    /// <summary>What a character's chunks carry besides PCM (the set_outputs and state replies).</summary>
    public sealed class StreamOutputs
    {
        /// <summary>The video part carries the frames; false is rig-only mode (the server skips its video decoder).</summary>
        public bool Video;
        /// <summary>The chunks carry rig frames (false for a model without a rig head).</summary>
        public bool Rig;
        public override string ToString() { return "video " + Video + ", rig " + Rig; }
    }

    public sealed class MfClient : IDisposable
    {
        public readonly ClientSettings Settings;
        public readonly Player Player;
        private readonly ITransport transport;
        private readonly object requestLock = new object(), connectLock = new object();
        private readonly string streamAddress;
        private readonly byte[] topic;
        private IMessageSocket dealer, sub;
        private Thread receiver;
        private volatile bool closed;
        private long nextId;
        private long newestSeen, newestRequested;
        private int seenConnections;
        private long badMessages, reconnects;

        /// <summary>Raised on the receive thread for every chunk of this character (before the Player gets it).</summary>
        public event Action<StreamChunk> ChunkReceived;
        /// <summary>Raised on the receive thread when the stream reconnected (the Player was reset).</summary>
        public event Action Reconnected;
        /// <summary>Diagnostics (bad messages, reconnects), from the receive thread.</summary>
        public event Action<string> Log;

        public long BadMessages { get { return Interlocked.Read(ref badMessages); } }
        public long Reconnects { get { return Interlocked.Read(ref reconnects); } }

        public MfClient(ClientSettings settings = null)
        {
            Settings = settings ?? new ClientSettings();
            if (string.IsNullOrEmpty(Settings.Character)) throw new ArgumentException("ClientSettings.Character must name a character");
            topic = Encoding.UTF8.GetBytes(Settings.Character);
            if (topic.Length > 64) throw new ArgumentException("character ids are at most 64 bytes of UTF-8");
            string host;
            int port;
            ZmtpSocket.ParseEndpoint(Settings.ControlAddress, out host, out port);
            streamAddress = Settings.StreamAddress;
            if (streamAddress == null)
            {
                if (port == 65535) throw new ArgumentException("control port 65535 has no +1 stream port: set StreamAddress");
                streamAddress = "tcp://" + (host.Contains(":") ? "[" + host + "]" : host) + ":" + (port + 1);
            }
            transport = Settings.Transport ?? new ZmtpTransport();
            Player = new Player(Settings.Player);
        }

        public string StreamAddress { get { return streamAddress; } }

        /// <summary>Open both sockets and start receiving. Returns at once: the connection is made in the background
        /// (and remade after a server restart); requests wait for it up to RequestTimeoutMs.</summary>
        public void Connect()
        {
            lock (connectLock)
            {
                if (closed) throw new ObjectDisposedException("MfClient");
                if (receiver != null) return;
                sub = transport.Subscribe(streamAddress, topic);
                dealer = transport.Dealer(Settings.ControlAddress);
                receiver = new Thread(Receive) { IsBackground = true, Name = "mfruntime stream " + Settings.Character };
                receiver.Start();
            }
        }

        private void Receive()
        {
            var poll = TimeSpan.FromMilliseconds(100);
            while (!closed)
            {
                List<byte[]> parts;
                bool got = sub.TryReceive(poll, out parts);
                int conns = sub.Connections;
                if (conns != seenConnections)
                {
                    if (seenConnections != 0) Restarted("the stream reconnected");
                    seenConnections = conns;
                }
                if (!got) continue;
                StreamChunk c;
                try { c = Protocol.DecodeChunk(parts); }
                catch (ProtocolException e)
                {
                    Interlocked.Increment(ref badMessages);
                    Say("mfruntime: rejected a stream message: " + e.Message);
                    continue;
                }
                if (c.Character != Settings.Character) continue;  // a longer id that shares our prefix
                if (c.Utterance < Interlocked.Read(ref newestSeen)) Restarted("the stream's utterance ids went back");
                Max(ref newestSeen, c.Utterance);
                var handler = ChunkReceived;
                if (handler != null)
                {
                    try { handler(c); }
                    catch (Exception e) { Say("mfruntime: a ChunkReceived handler failed: " + e); }  // keep receiving
                }
                if (!Settings.UsePlayer) continue;
                try { Player.Push(c); }
                catch (ArgumentException e) { Interlocked.Increment(ref badMessages); Say("mfruntime: " + e.Message); }
            }
        }

        private void Restarted(string why)
        {
            Interlocked.Increment(ref reconnects);
            Interlocked.Exchange(ref newestSeen, 0);
            Interlocked.Exchange(ref newestRequested, 0);
            Player.Reset();
            Say("mfruntime: " + why + " (the server may have restarted); playback reset");
            var r = Reconnected;
            if (r == null) return;
            try { r(); }
            catch (Exception e) { Say("mfruntime: a Reconnected handler failed: " + e); }
        }

        private void Say(string message)
        {
            var log = Log;
            if (log == null) return;
            try { log(message); }
            catch (Exception) { }  // a failing log handler must not stop the stream
        }

        private static void Max(ref long field, long value)
        {
            long seen;
            while (value > (seen = Interlocked.Read(ref field)) && Interlocked.CompareExchange(ref field, value, seen) != seen) { }
        }

        // --- requests ----------------------------------------------------------------------------------------------

        /// <summary>Send one request and wait for its reply (matched by id; stale replies are skipped). Throws
        /// ServerException for an error reply, TimeoutException when none comes in time.</summary>
        public Dictionary<string, object> Request(string op, params KeyValuePair<string, object>[] fields)
        {
            if (closed) throw new ObjectDisposedException("MfClient");
            Connect();  // no-op once connected
            lock (requestLock)
            {
                long id = ++nextId;
                dealer.Send(new[] { Protocol.EncodeRequest(op, id, fields) }, TimeSpan.FromMilliseconds(Settings.ConnectTimeoutMs));
                var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(Settings.RequestTimeoutMs);
                while (true)
                {
                    var left = deadline - DateTime.UtcNow;
                    List<byte[]> parts;
                    if (left <= TimeSpan.Zero || !dealer.TryReceive(left, out parts))
                        throw new TimeoutException("mf serve at " + Settings.ControlAddress + " did not answer '" + op + "' within " +
                                                   Settings.RequestTimeoutMs + " ms");
                    var reply = Protocol.DecodeReply(parts[parts.Count - 1]);  // a REQ-style empty delimiter may precede it
                    object rid;
                    reply.TryGetValue("id", out rid);
                    if (!(rid is long) || (long)rid != id) continue;  // the late reply of a request that timed out
                    if ((reply["status"] as string) != "ok")
                    {
                        object err;
                        reply.TryGetValue("error", out err);
                        throw new ServerException("mf serve: " + (err as string ?? "error"));
                    }
                    return reply;
                }
            }
        }

        public Dictionary<string, object> Ping() { return Request("ping"); }

        public Dictionary<string, object> State() { return Request("state", Protocol.F("character", Settings.Character)); }

        /// <summary>The names of the rig values, in the order of a rig row (ping → rig.controls). A server of the same
        /// rig version as this bridge names RigControls.Names; a newer one appends names.</summary>
        public string[] RigControlNames()
        {
            object rig, controls;
            var ping = Ping();
            if (!ping.TryGetValue("rig", out rig) || !(rig is Dictionary<string, object>) ||
                !((Dictionary<string, object>)rig).TryGetValue("controls", out controls) || !(controls is List<object>))
                throw new ProtocolException("the server's ping reply names no rig controls: is it an mf serve of protocol version " + Protocol.Version + "?");
            var list = (List<object>)controls;
            var names = new string[list.Count];
            for (int i = 0; i < names.Length; i++)
            {
                names[i] = list[i] as string;
                if (names[i] == null) throw new ProtocolException("ping: rig control " + i + " is not a name: " + Protocol.Show(list[i]));
            }
            return names;
        }

        /// <summary>Choose what this character's chunks carry from its next utterance on: <paramref name="video"/> false
        /// is rig-only mode (no pixels, the server skips its video decoder: audio and rig frames only), <paramref name="rig"/>
        /// false drops the rig frames; null leaves a setting as it is. Returns the settings now (Rig is false when the
        /// server's model has no rig head; rig-only mode then fails with a ServerException saying so). The settings stay
        /// on the server for this character until changed, also for other clients.</summary>
        public StreamOutputs SetOutputs(bool? video = null, bool? rig = null)
        {
            var r = Request("set_outputs", Protocol.F("character", Settings.Character),
                            Protocol.F("video", video.HasValue ? (object)video.Value : null), Protocol.F("rig", rig.HasValue ? (object)rig.Value : null));
            return Outputs(r, "set_outputs");
        }

        /// <summary>The video and rig settings of a set_outputs or state reply.</summary>
        public static StreamOutputs Outputs(Dictionary<string, object> reply, string op = "state")
        {
            object v, r;
            if (!reply.TryGetValue("video", out v) || !(v is bool) || !reply.TryGetValue("rig", out r) || !(r is bool))
                throw new ProtocolException("the " + op + " reply has no video and rig settings: is the server of protocol version " + Protocol.Version + "?");
            return new StreamOutputs { Video = (bool)v, Rig = (bool)r };
        }

        /// <summary>Speak <paramref name="text"/>; returns the utterance id. Its chunks may arrive before this returns.</summary>
        public long Say(string text, string voice = null, int steps = 0)
        {
            if (string.IsNullOrWhiteSpace(text)) throw new ArgumentException("Say needs some text to speak");
            var r = Request("say", Protocol.F("character", Settings.Character), Protocol.F("text", text),
                            Protocol.F("voice", voice), Protocol.F("steps", steps > 0 ? (object)(long)steps : null));
            return Utterance(r);
        }

        /// <summary>Target denoising steps per chunk (1–4 live, 8–50 quality); <paramref name="minSteps"/> &gt; 0 also sets
        /// the floor the server may lower them to when this character's stream would fall behind. Returns the steps.</summary>
        public int SetSteps(int steps, int minSteps = 0)
        {
            var r = Request("set_steps", Protocol.F("character", Settings.Character), Protocol.F("steps", (long)steps),
                            Protocol.F("min_steps", minSteps > 0 ? (object)(long)minSteps : null));
            object v;
            if (!r.TryGetValue("steps", out v) || !(v is long))
                throw new ProtocolException("the set_steps reply has no steps");
            return (int)(long)v;
        }

        /// <summary>Listening between lines: <paramref name="on"/> = true makes the server stream idle chunks (silence,
        /// the mouth closed, blinks and a slow head sway) whenever this character has nothing to say; a Say takes over
        /// at once. Returns the setting.</summary>
        public bool SetIdle(bool on)
        {
            var r = Request("idle", Protocol.F("character", Settings.Character), Protocol.F("on", on));
            object v;
            if (!r.TryGetValue("idle", out v) || !(v is bool))
                throw new ProtocolException("the idle reply has no idle setting: is the server of protocol version " + Protocol.Version + "?");
            return (bool)v;
        }

        /// <summary>Lip-sync given speech: mono float samples in [-1, 1] at <paramref name="sampleRate"/> Hz.</summary>
        public long Drive(float[] pcm, int sampleRate, int steps = 0)
        {
            if (pcm == null || pcm.Length == 0) throw new ArgumentException("Drive needs some audio");
            var r = Request("drive", Protocol.F("character", Settings.Character), Protocol.F("pcm", pcm),
                            Protocol.F("sample_rate", (long)sampleRate), Protocol.F("steps", steps > 0 ? (object)(long)steps : null));
            return Utterance(r);
        }

        /// <summary>Stop talking now: playback of the current line fades out at once, and the server ends it.
        /// Returns the utterance the server cut, or null when it was idle.</summary>
        public long? Interrupt()
        {
            Player.Cut(Math.Max(Interlocked.Read(ref newestSeen), Interlocked.Read(ref newestRequested)));
            var r = Request("interrupt", Protocol.F("character", Settings.Character));
            object u;
            r.TryGetValue("utterance", out u);
            if (u is long) { Player.Cut((long)u); return (long)u; }
            return null;
        }

        /// <summary>A new face from raw RGB (rows top first, width × height × 3 bytes); applies from the next line.
        /// <paramref name="renderer"/> and <paramref name="size"/> as for <see cref="SetCharacterImage"/>.</summary>
        public Dictionary<string, object> SetCharacter(byte[] rgb, int width, int height, string voice = null, string renderer = null, int size = 0)
        {
            CheckRenderer(renderer, "SetCharacter");
            if (rgb == null || width <= 0 || height <= 0 || rgb.Length != (long)width * height * 3)
                throw new ArgumentException("SetCharacter needs width × height × 3 bytes of RGB (" + width + "×" + height + " → " +
                                            (long)Math.Max(0, width) * Math.Max(0, height) * 3 + " bytes, got " + (rgb == null ? 0 : rgb.Length) + ")");
            return Request("set_character", Protocol.F("character", Settings.Character), Protocol.F("image", rgb),
                           Protocol.F("width", (long)width), Protocol.F("height", (long)height), Protocol.F("voice", voice),
                           Protocol.F("renderer", renderer), Protocol.F("size", size > 0 ? (object)(long)size : null));
        }

        private static void CheckRenderer(string renderer, string method)
        {
            if (renderer != null && renderer != "auto" && renderer != "model" && renderer != "portrait")
                throw new ArgumentException(method + ": renderer must be auto, model or portrait, got '" + renderer + "'");
        }

        /// <summary>A new face from an encoded image file (PNG, JPEG, ...). <paramref name="renderer"/>: "auto", "model" or
        /// "portrait" (null: auto — the model for an image of at most 128 px, a portrait for a larger one; "portrait" animates a photo or painting in its own
        /// framing, <paramref name="size"/> px on its long side, 0 = the server's default). Returns the reply
        /// (renderer, width, height): the frames of the character's chunks have that size.</summary>
        public Dictionary<string, object> SetCharacterImage(byte[] encoded, string voice = null, string renderer = null, int size = 0)
        {
            if (encoded == null || encoded.Length == 0) throw new ArgumentException("SetCharacterImage needs the bytes of an image file");
            CheckRenderer(renderer, "SetCharacterImage");
            return Request("set_character", Protocol.F("character", Settings.Character), Protocol.F("image", encoded), Protocol.F("voice", voice),
                           Protocol.F("renderer", renderer), Protocol.F("size", size > 0 ? (object)(long)size : null));
        }

        /// <summary>One of the server's built-in faces.</summary>
        public void SetCharacterSeed(int faceSeed, string voice = null)
        {
            Request("set_character", Protocol.F("character", Settings.Character), Protocol.F("face_seed", (long)faceSeed), Protocol.F("voice", voice));
        }

        public Task<long> SayAsync(string text, string voice = null, int steps = 0) { return Task.Run(() => Say(text, voice, steps)); }
        public Task<long> DriveAsync(float[] pcm, int sampleRate, int steps = 0) { return Task.Run(() => Drive(pcm, sampleRate, steps)); }
        public Task<long?> InterruptAsync() { return Task.Run(() => Interrupt()); }
        public Task<StreamOutputs> SetOutputsAsync(bool? video = null, bool? rig = null) { return Task.Run(() => SetOutputs(video, rig)); }
        public Task<bool> SetIdleAsync(bool on) { return Task.Run(() => SetIdle(on)); }

        private long Utterance(Dictionary<string, object> reply)
        {
            object u;
            if (!reply.TryGetValue("utterance", out u) || !(u is long)) throw new ProtocolException("the reply has no utterance id");
            Max(ref newestRequested, (long)u);
            return (long)u;
        }

        public void Dispose()
        {
            if (closed) return;
            closed = true;
            if (receiver != null) receiver.Join(500);  // it polls every 100 ms
            if (sub != null) sub.Dispose();
            if (dealer != null) dealer.Dispose();
        }
    }
}
