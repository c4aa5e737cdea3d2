// Every protocol test vector (tests/vectors in the mfruntime repository) through the C# MessagePack reader/writer and
// the stream decoder: good vectors decode to the JSON's values, bad ones are rejected for the JSON's reason.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;

namespace Mfruntime.Tests
{
    public static class VectorTests
    {
        private static IEnumerable<string> Names(string dir, string prefix)
        {
            var names = Directory.GetFiles(dir, prefix + "*.json").Select(Path.GetFileNameWithoutExtension).OrderBy(n => n).ToList();
            Check.True(names.Count > 0, "no " + prefix + "* vectors in " + dir);
            return names;
        }

        private static Dictionary<string, object> Expected(string dir, string name)
        {
            return (Dictionary<string, object>)Json.Parse(File.ReadAllText(Path.Combine(dir, name + ".json")));
        }

        private static List<byte[]> Parts(string dir, string name)
        {
            return Enumerable.Range(0, 4).Select(i => File.ReadAllBytes(Path.Combine(dir, name + "." + i + ".bin"))).ToList();
        }

        private static string Hex(byte[] b) { return BitConverter.ToString(b).Replace("-", "").ToLowerInvariant(); }

        [Test]
        public static void StreamVectorsDecodeToTheirJson(string dir)
        {
            foreach (var name in Names(dir, "stream_"))
            {
                var want = Expected(dir, name);
                var parts = Parts(dir, name);
                var c = Protocol.DecodeChunk(parts);
                var h = (Dictionary<string, object>)want["header"];
                Check.Equal((string)want["topic"], c.Character, name + " topic");
                Check.Equal((string)h["character"], c.Character, name + " character");
                Check.Equal((long)h["utterance"], c.Utterance, name + " utterance");
                Check.Equal((long)h["seq"], c.Seq, name + " seq");
                Check.Equal(Convert.ToDouble(h["pts"]), c.Pts, name + " pts");
                Check.Equal((long)Math.Round(Convert.ToDouble(h["pts"]) * (long)h["sample_rate"]), c.Clock, name + " sample clock");
                foreach (var f in new[] { "width", "height", "frames", "fps", "sample_rate", "samples" })
                {
                    long got = f == "width" ? c.Width : f == "height" ? c.Height : f == "frames" ? c.Frames : f == "fps" ? c.Fps : f == "sample_rate" ? c.SampleRate : c.Samples;
                    Check.Equal((long)h[f], got, name + " " + f);
                }
                Check.Equal((bool)h["eou"], c.Eou, name + " eou");
                Check.Equal((bool)h["interrupted"], c.Interrupted, name + " interrupted");
                Check.Equal((long)want["video_bytes"], (long)c.Video.Length, name + " video bytes");
                Check.Equal((long)want["pcm_bytes"], (long)c.Pcm.Length * 4, name + " pcm bytes");
                using (var sha = SHA256.Create())
                {
                    Check.Equal((string)want["video_sha256"], Hex(sha.ComputeHash(c.Video)), name + " video sha256");
                    Check.Equal((string)want["pcm_sha256"], Hex(sha.ComputeHash(MsgPackWriter.FloatBytes(c.Pcm))), name + " pcm sha256");
                }
                var first = (List<object>)want["video_first"];
                for (int i = 0; i < first.Count; i++) Check.Equal((long)first[i], (long)c.Video[i], name + " video byte " + i);
                var last = (List<object>)want["video_last"];
                for (int i = 0; i < last.Count; i++) Check.Equal((long)last[i], (long)c.Video[c.Video.Length - last.Count + i], name + " video tail " + i);
                var pcm = (List<object>)want["pcm_first"];
                for (int i = 0; i < pcm.Count; i++) Check.Equal(Convert.ToDouble(pcm[i]), (double)c.Pcm[i], name + " pcm " + i);
                Check.Equal(c.Frames == 0 && c.Samples == 0, c.IsEndMarker, name + " end marker");
            }
        }

        [Test]
        public static void ControlVectorsDecodeToTheirJsonAndReencodeToTheSameBytes(string dir)
        {
            foreach (var name in Names(dir, "request_").Concat(Names(dir, "reply_")))
            {
                byte[] bytes = File.ReadAllBytes(Path.Combine(dir, name + ".msgpack"));
                var want = (Dictionary<string, object>)Expected(dir, name)["decoded"];
                var got = name.StartsWith("request_") ? Protocol.DecodeRequest(bytes) : Protocol.DecodeReply(bytes);
                Same(want, got, name);
                // The writer makes the same bytes as the server's encoder (map order kept, smallest encodings).
                Check.Equal(Hex(bytes), Hex(MsgPackWriter.Encode(got)), name + " re-encoded");
            }
        }

        /// <summary>Deep equality of a JSON value (byte strings as {"$hex": ...}) and a decoded msgpack value.</summary>
        private static void Same(object want, object got, string where)
        {
            var wm = want as Dictionary<string, object>;
            if (wm != null && wm.Count == 1 && wm.ContainsKey("$hex"))
            {
                Check.True(got is byte[], where + ": expected bytes, got " + got);
                Check.Equal((string)wm["$hex"], Hex((byte[])got), where);
                return;
            }
            if (wm != null)
            {
                var gm = got as Dictionary<string, object>;
                Check.True(gm != null, where + ": expected a map");
                Check.Equal(string.Join(",", wm.Keys), string.Join(",", gm.Keys), where + " keys (in order)");
                foreach (var kv in wm) Same(kv.Value, gm[kv.Key], where + "." + kv.Key);
                return;
            }
            var wl = want as List<object>;
            if (wl != null)
            {
                var gl = got as List<object>;
                Check.True(gl != null && gl.Count == wl.Count, where + ": expected a list of " + wl.Count);
                for (int i = 0; i < wl.Count; i++) Same(wl[i], gl[i], where + "[" + i + "]");
                return;
            }
            if (want is double || got is double) { Check.Equal(Convert.ToDouble(want), Convert.ToDouble(got), where); return; }
            Check.Equal(want, got, where);
        }

        [Test]
        public static void BadVectorsAreRejectedForTheirReason(string dir)
        {
            int n = 0;
            foreach (var name in Names(dir, "bad_"))
            {
                string reason = (string)Expected(dir, name)["error"];
                if (name.StartsWith("bad_stream_"))
                    Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(Parts(dir, name)), reason, name);
                else
                    Check.Throws<ProtocolException>(() => Protocol.DecodeRequest(File.ReadAllBytes(Path.Combine(dir, name + ".msgpack"))), reason, name);
                n++;
            }
            Check.True(n >= 6, "expected the six bad vectors, found " + n);
        }

        [Test]
        public static void MalformedInputsGiveClearErrorsNotCrashes()
        {
            var good = new List<byte[]> { new byte[] { (byte)'a' }, MsgPackWriter.Encode(new Dictionary<string, object> { { "v", 1L } }), new byte[0], new byte[0] };
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(good.Take(3).ToList()), "4 parts", "three parts");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(good), "must be an integer", "missing fields");
            Func<string, object, List<byte[]>> header = (field, value) =>
            {
                var h = new List<KeyValuePair<string, object>>
                {
                    Protocol.F("v", 1L), Protocol.F("character", "a"), Protocol.F("utterance", 1L), Protocol.F("seq", 0L),
                    Protocol.F("pts", 0.0), Protocol.F("width", 1L), Protocol.F("height", 1L), Protocol.F("frames", 0L),
                    Protocol.F("fps", 25L), Protocol.F("sample_rate", 16000L), Protocol.F("samples", 0L),
                    Protocol.F("eou", true), Protocol.F("interrupted", false),
                };
                h[h.FindIndex(kv => kv.Key == field)] = Protocol.F(field, value);
                return new List<byte[]> { new byte[] { (byte)'a' }, MsgPackWriter.Encode(h), new byte[0], new byte[0] };
            };
            Check.True(Protocol.DecodeChunk(header("seq", 0L)).IsEndMarker, "a well-formed end marker decodes");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("width", 1L << 40)), "out of range", "a huge width cannot overflow the size check");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("pts", double.NaN)), "finite", "NaN pts");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("eou", 1L)), "must be a bool", "an int for a bool");
            Check.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0xdb, 0x7f, 0xff, 0xff, 0xff }), "limit", "a 2 GB string");
            Check.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0xdd, 0, 0, 0, 5 }), "truncated", "an array that is not there");
            Check.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0xc1 }), "not supported", "the never-used byte");
            Check.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0x81, 0x01, 0x02 }), "keys must be strings", "an integer key");
            Check.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0xa2, 0xff, 0xfe }), "UTF-8", "bad UTF-8");
            var deep = Enumerable.Repeat((byte)0x91, 100).Concat(new byte[] { 0xc0 }).ToArray();
            Check.Throws<MsgPackException>(() => MsgPackReader.Decode(deep), "nesting", "100 nested arrays");
            // Every value type round-trips.
            var v = new List<KeyValuePair<string, object>>
            {
                Protocol.F("n", null), Protocol.F("t", true), Protocol.F("neg", -200000L), Protocol.F("big", 1L << 40),
                Protocol.F("f", 0.25), Protocol.F("s", new string('x', 300)), Protocol.F("b", new byte[70000]),
                Protocol.F("l", new List<object> { 1L, "two", -3L }),
            };
            var back = (Dictionary<string, object>)MsgPackReader.Decode(MsgPackWriter.Encode(v));
            Check.Equal(null, back["n"], "nil");
            Check.Equal(true, (bool)back["t"], "bool");
            Check.Equal(-200000L, (long)back["neg"], "negative int");
            Check.Equal(1L << 40, (long)back["big"], "64-bit int");
            Check.Equal(0.25, (double)back["f"], "float");
            Check.Equal(300, ((string)back["s"]).Length, "str16");
            Check.Equal(70000, ((byte[])back["b"]).Length, "bin32");
            Check.Equal("two", (string)((List<object>)back["l"])[1], "array");
        }
    }
}
