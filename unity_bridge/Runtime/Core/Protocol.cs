// The mf serve wire protocol, version 1 (the package's Documentation~ and the repository's docs/PROTOCOL.md):
// stream messages [topic, msgpack header, video, pcm] and control requests/replies (one msgpack map each).
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

    /// <summary>One decoded stream message: 160 ms of video and PCM of one character, or an empty end marker.</summary>
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
        /// <summary>Frames × Height × Width × 3 bytes, RGB, rows top first.</summary>
        public byte[] Video;
        /// <summary>Samples mono float32 samples in [-1, 1].</summary>
        public float[] Pcm;

        public bool IsEndMarker { get { return Frames == 0 && Samples == 0; } }

        /// <summary>Sample clock of frame <paramref name="i"/> of this chunk.</summary>
        public long FrameClock(int i) { return Clock + (long)i * SampleRate / Fps; }
    }

    public static class Protocol
    {
        public const int Version = 1;
        public const int MaxHeaderBytes = 64 * 1024;

        /// <summary>Largest values a client accepts (far above any real stream), so sizes cannot overflow.</summary>
        private static readonly KeyValuePair<string, long>[] Limits =
        {
            new KeyValuePair<string, long>("width", 8192), new KeyValuePair<string, long>("height", 8192),
            new KeyValuePair<string, long>("frames", 1000), new KeyValuePair<string, long>("fps", 1000),
            new KeyValuePair<string, long>("sample_rate", 384000), new KeyValuePair<string, long>("samples", 16 * 1024 * 1024),
        };

        private static readonly string[] IntFields = { "v", "utterance", "seq", "width", "height", "frames", "fps", "sample_rate", "samples" };

        /// <summary>Decode and check a stream message (the four frames as received). Throws ProtocolException for
        /// everything a client must reject: part count, header type and version, missing or mistyped fields,
        /// topic/character mismatch, and video or pcm sizes that differ from the header.</summary>
        public static StreamChunk DecodeChunk(IList<byte[]> parts)
        {
            if (parts == null || parts.Count != 4)
                throw new ProtocolException("a stream message has 4 parts (topic, header, video, pcm), got " + (parts == null ? 0 : parts.Count));
            byte[] topic = parts[0], head = parts[1], video = parts[2], pcm = parts[3];
            if (head.Length > MaxHeaderBytes) throw new ProtocolException("the stream header is " + head.Length + " bytes, at most " + MaxHeaderBytes);
            object decoded;
            try { decoded = MsgPackReader.Decode(head); }
            catch (MsgPackException e) { throw new ProtocolException("stream header: " + e.Message); }
            var h = decoded as Dictionary<string, object>;
            if (h == null) throw new ProtocolException("the stream header must be a msgpack map");
            object v;
            if (!h.TryGetValue("v", out v) || !(v is long) || (long)v != Version)
                throw new ProtocolException("stream protocol version " + Show(v) + ", this client reads version " + Version);
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
            long wantVideo = (long)c.Frames * c.Height * c.Width * 3;
            if (video.Length != wantVideo)
                throw new ProtocolException("video part is " + video.Length + " bytes, the header says " + wantVideo);
            if (pcm.Length != 4L * c.Samples)
                throw new ProtocolException("pcm part is " + pcm.Length + " bytes, the header says " + 4L * c.Samples);
            if (c.SampleRate == 0 || c.Fps == 0) throw new ProtocolException("stream header: fps and sample_rate must be positive");
            c.Clock = (long)Math.Round(c.Pts * c.SampleRate);
            c.Video = video;
            c.Pcm = new float[c.Samples];
            if (!BitConverter.IsLittleEndian)
                for (int i = 0; i < pcm.Length; i += 4) Array.Reverse(pcm, i, 4);
            Buffer.BlockCopy(pcm, 0, c.Pcm, 0, pcm.Length);
            return c;
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

        public static readonly string[] Ops = { "ping", "say", "drive", "interrupt", "set_character", "set_steps", "stats", "state" };
    }
}
