// The mf serve wire protocol, version 3 (the package's Documentation~ and the repository's docs/PROTOCOL.md):
// stream messages [topic, msgpack header, video, pcm, rig] and control requests/replies (one msgpack map each).
using System;
using System.Collections.Generic;
using System.Text;

namespace Mfruntime
{
    /// <summary>A message that breaks the protocol; the message names what is wrong.</summary>
    public sealed class ProtocolException : Exception
    {
        public ProtocolException(string message) : base(message) { }
    }

    /// <summary>The server answered a request with an error (bad text, unknown character, ...).</summary>
    public sealed class ServerException : Exception
    {
        public ServerException(string message) : base(message) { }
    }

    /// <summary>One decoded stream message: 160 ms of video, PCM and rig frames of one character, or an empty end
    /// marker. In rig-only mode (HasVideo false) Video is empty while Frames still counts the chunk's frames.</summary>
    public sealed class StreamChunk
    {
        public string Character;
        public long Utterance;
        public long Seq;
        /// <summary>Seconds on the character's stream clock (exactly Clock / SampleRate).</summary>
        public double Pts;
        /// <summary>The integer sample clock of the first sample: round(Pts × SampleRate). Compare these, not floats.</summary>
        public long Clock;
        public int Width, Height, Frames, Fps, SampleRate, Samples;
        public bool Eou, Interrupted;
        /// <summary>The video part carries the frames (the header's video). False in rig-only mode: Video is empty.</summary>
        public bool HasVideo = true;
        /// <summary>Frames × Height × Width × 3 bytes, RGB, rows top first; empty when HasVideo is false.</summary>
        public byte[] Video;
        /// <summary>Samples mono float32 samples in [-1, 1].</summary>
        public float[] Pcm;
        /// <summary>Rig values per frame (the header's controls); 0 when the chunk has no rig part.</summary>
        public int Controls;
        /// <summary>The version of the control list that names the rig values (RigControls.Version today).</summary>
        public int RigVersion;
        /// <summary>The denoising steps the chunk was made with (a server under load may lower them towards the
        /// character's min_steps); 0 when no model step made it (an end marker, an idle chunk without the model).</summary>
        public int Steps;
        /// <summary>Frames × Controls values, row-major (frame, control): value c of a row is named by the c-th name of
        /// the control list (RigControls.Names). Null when Controls is 0.</summary>
        public float[] Rig;

        public bool IsEndMarker { get { return Frames == 0 && Samples == 0; } }

        /// <summary>Sample clock of frame <paramref name="i"/> of this chunk.</summary>
        public long FrameClock(int i) { return Clock + (long)i * SampleRate / Fps; }

        /// <summary>Rig value <paramref name="control"/> of frame <paramref name="frame"/> (Rig must not be null).</summary>
        public float RigValue(int frame, int control) { return Rig[frame * Controls + control]; }
    }

    public static class Protocol
    {
        public const int Version = 3;
        public const int Parts = 5;
        public const int MaxHeaderBytes = 64 * 1024;

        /// <summary>Largest values a client accepts (far above any real stream), so sizes cannot overflow.</summary>
        private static readonly KeyValuePair<string, long>[] Limits =
        {
            new KeyValuePair<string, long>("width", 8192), new KeyValuePair<string, long>("height", 8192),
            new KeyValuePair<string, long>("frames", 1000), new KeyValuePair<string, long>("fps", 1000),
            new KeyValuePair<string, long>("sample_rate", 384000), new KeyValuePair<string, long>("samples", 16 * 1024 * 1024),
            new KeyValuePair<string, long>("controls", 4096), new KeyValuePair<string, long>("rig_version", int.MaxValue),
            new KeyValuePair<string, long>("steps", 1000),
        };

        private static readonly string[] IntFields =
            { "v", "utterance", "seq", "width", "height", "frames", "fps", "sample_rate", "samples", "controls", "rig_version", "steps" };

        /// <summary>Decode and check a stream message (the five frames as received). Throws ProtocolException for
        /// everything a client must reject: part count, header type and version, missing or mistyped fields,
        /// topic/character mismatch, and video, pcm or rig sizes that differ from the header.</summary>
        public static StreamChunk DecodeChunk(IList<byte[]> parts)
        {
            int count = parts == null ? 0 : parts.Count;
            if (count != Parts)
                throw new ProtocolException("a stream message has 5 parts (topic, header, video, pcm, rig), got " + count +
                                            (count == 4 ? ": a protocol version 1 server sends 4; update mf serve to this bridge's version" : ""));
            byte[] topic = parts[0], head = parts[1], video = parts[2], pcm = parts[3], rig = parts[4];
            if (head.Length > MaxHeaderBytes) throw new ProtocolException("the stream header is " + head.Length + " bytes, at most " + MaxHeaderBytes);
            object decoded;
            try { decoded = MsgPackReader.Decode(head); }
            catch (MsgPackException e) { throw new ProtocolException("stream header: " + e.Message); }
            var h = decoded as Dictionary<string, object>;
            if (h == null) throw new ProtocolException("the stream header must be a msgpack map");
            object v;
            if (!h.TryGetValue("v", out v) || !(v is long) || (long)v != Version)
                throw new ProtocolException("stream protocol version " + Show(v) + ", this client reads version " + Version +
                                            ": use an mf serve and a bridge of the same version");
            var ints = new Dictionary<string, long>();
            foreach (string name in IntFields)
            {
                object x;
                if (!h.TryGetValue(name, out x) || !(x is long))
                    throw new ProtocolException("stream header field '" + name + "' must be an integer, got " + Show(x));
                ints[name] = (long)x;
            }
            var c = new StreamChunk
            {
                Character = Field<string>(h, "character", "a string"),
                Utterance = ints["utterance"],
                Seq = ints["seq"],
                Eou = Field<bool>(h, "eou", "a bool"),
                Interrupted = Field<bool>(h, "interrupted", "a bool"),
                HasVideo = Field<bool>(h, "video", "a bool"),
            };
            object pts;
            h.TryGetValue("pts", out pts);
            if (pts is double) c.Pts = (double)pts;
            else if (pts is long) c.Pts = (long)pts;  // an integer pts is accepted as a float
            else throw new ProtocolException("stream header field 'pts' must be a float, got " + Show(pts));
            string topicText;
            try { topicText = new UTF8Encoding(false, true).GetString(topic); }
            catch (ArgumentException) { throw new ProtocolException("the topic is not UTF-8"); }
            if (topicText != c.Character)
                throw new ProtocolException("topic '" + topicText + "' does not match the header's character '" + c.Character + "'");
            foreach (var limit in Limits)
                if (ints[limit.Key] < 0 || ints[limit.Key] > limit.Value)
                    throw new ProtocolException("stream header field '" + limit.Key + "' is out of range: " + ints[limit.Key] + " (0-" + limit.Value + ")");
            if (double.IsNaN(c.Pts) || double.IsInfinity(c.Pts) || c.Pts < 0)
                throw new ProtocolException("stream header field 'pts' must be a finite time ≥ 0, got " + c.Pts);
            c.Width = (int)ints["width"]; c.Height = (int)ints["height"]; c.Frames = (int)ints["frames"];
            c.Fps = (int)ints["fps"]; c.SampleRate = (int)ints["sample_rate"]; c.Samples = (int)ints["samples"];
            c.Controls = (int)ints["controls"]; c.RigVersion = (int)ints["rig_version"]; c.Steps = (int)ints["steps"];
            long wantVideo = c.HasVideo ? (long)c.Frames * c.Height * c.Width * 3 : 0;
            if (video.Length != wantVideo)
                throw new ProtocolException("video part is " + video.Length + " bytes, the header says " + wantVideo +
                                            (c.HasVideo ? "" : " (video = false: rig-only)"));
            if (pcm.Length != 4L * c.Samples)
                throw new ProtocolException("pcm part is " + pcm.Length + " bytes, the header says " + 4L * c.Samples);
            long wantRig = 4L * c.Frames * c.Controls;
            if (rig.Length != wantRig)
                throw new ProtocolException("rig part is " + rig.Length + " bytes, the header says " + wantRig +
                                            " (" + c.Frames + " frames × " + c.Controls + " controls × 4)");
            if (c.SampleRate == 0 || c.Fps == 0) throw new ProtocolException("stream header: fps and sample_rate must be positive");
            c.Clock = (long)Math.Round(c.Pts * c.SampleRate);
            c.Video = video;
            c.Pcm = Floats(pcm);
            c.Rig = c.Controls == 0 ? null : Floats(rig);
            return c;
        }

        /// <summary>float32 little-endian bytes → floats (the bytes are reordered in place on a big-endian machine).</summary>
        private static float[] Floats(byte[] bytes)
        {
            var values = new float[bytes.Length / 4];
            if (!BitConverter.IsLittleEndian)
                for (int i = 0; i < bytes.Length; i += 4) Array.Reverse(bytes, i, 4);
            Buffer.BlockCopy(bytes, 0, values, 0, values.Length * 4);
            return values;
        }

        private static T Field<T>(Dictionary<string, object> h, string name, string what)
        {
            object x;
            if (!h.TryGetValue(name, out x) || !(x is T)) throw new ProtocolException("stream header field '" + name + "' must be " + what + ", got " + Show(x));
            return (T)x;
        }

        internal static string Show(object x)
        {
            if (x == null) return "nothing";
            string s = x is string ? "'" + x + "'" : x.ToString();
            return s.Length > 40 ? s.Substring(0, 40) + "…" : s;
        }

        // --- control ----------------------------------------------------------------------------------------------

        /// <summary>A request map: op, v, id, then the op's fields in order (null values are left out).</summary>
        public static byte[] EncodeRequest(string op, long id, params KeyValuePair<string, object>[] fields)
        {
            var map = new List<KeyValuePair<string, object>>
            {
                new KeyValuePair<string, object>("v", (long)Version),
                new KeyValuePair<string, object>("op", op),
                new KeyValuePair<string, object>("id", id),
            };
            foreach (var f in fields) if (f.Value != null) map.Add(f);
            return MsgPackWriter.Encode(map);
        }

        public static KeyValuePair<string, object> F(string key, object value) { return new KeyValuePair<string, object>(key, value); }

        /// <summary>Decode a reply map; throws ProtocolException when it is not one.</summary>
        public static Dictionary<string, object> DecodeReply(byte[] payload)
        {
            object decoded;
            try { decoded = MsgPackReader.Decode(payload); }
            catch (MsgPackException e) { throw new ProtocolException("reply: " + e.Message); }
            var map = decoded as Dictionary<string, object>;
            if (map == null || !map.ContainsKey("status")) throw new ProtocolException("a reply must be a msgpack map with a status");
            return map;
        }

        /// <summary>Decode a request map (used by tests and tools; the server is the real judge). Checks what any
        /// request needs: a map with a known op.</summary>
        public static Dictionary<string, object> DecodeRequest(byte[] payload)
        {
            object decoded;
            try { decoded = MsgPackReader.Decode(payload); }
            catch (MsgPackException e) { throw new ProtocolException("request: " + e.Message); }
            var map = decoded as Dictionary<string, object>;
            if (map == null) throw new ProtocolException("a request must be a msgpack map");
            object op;
            map.TryGetValue("op", out op);
            if (!(op is string) || Array.IndexOf(Ops, (string)op) < 0)
                throw new ProtocolException("unknown op " + Show(op) + ": use one of " + string.Join(", ", Ops));
            return map;
        }

        public static readonly string[] Ops = { "ping", "say", "drive", "idle", "interrupt", "set_character", "set_steps", "set_outputs", "stats", "state" };
    }
}
