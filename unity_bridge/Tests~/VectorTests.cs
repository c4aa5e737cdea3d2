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

        /// <summary>The message's parts as the vector has them: NAME.0.bin, NAME.1.bin, … (five, or four for a version-1 one).</summary>
        private static List<byte[]> Parts(string dir, string name)
        {
            var parts = new List<byte[]>();
            for (string f; File.Exists(f = Path.Combine(dir, name + "." + parts.Count + ".bin"));) parts.Add(File.ReadAllBytes(f));
            Check.True(parts.Count >= 4, name + ": no parts in " + dir);
            return parts;
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
                Check.Equal((bool)h["video"], c.HasVideo, name + " video");
                Check.Equal((long)h["controls"], (long)c.Controls, name + " controls");
                Check.Equal((long)h["rig_version"], (long)c.RigVersion, name + " rig_version");
                Check.Equal((long)h["steps"], (long)c.Steps, name + " steps");
                Check.Equal(string.Join(",", h.Keys), "v,character,utterance,seq,pts,width,height,frames,fps,sample_rate,samples,eou,interrupted,video,controls,rig_version,steps",
                            name + " header keys (every one checked above)");
                Check.Equal((long)want["video_bytes"], (long)c.Video.Length, name + " video bytes");
                Check.Equal((long)want["pcm_bytes"], (long)c.Pcm.Length * 4, name + " pcm bytes");
                Check.Equal((long)want["rig_bytes"], c.Rig == null ? 0L : (long)c.Rig.Length * 4, name + " rig bytes");
                Check.Equal(c.Controls == 0, c.Rig == null, name + " no rig values exactly when controls is 0");
                using (var sha = SHA256.Create())
                {
                    Check.Equal((string)want["video_sha256"], Hex(sha.ComputeHash(c.Video)), name + " video sha256");
                    Check.Equal((string)want["pcm_sha256"], Hex(sha.ComputeHash(MsgPackWriter.FloatBytes(c.Pcm))), name + " pcm sha256");
                    Check.Equal((string)want["rig_sha256"], Hex(sha.ComputeHash(MsgPackWriter.FloatBytes(c.Rig ?? new float[0]))), name + " rig sha256");
                }
                var rig = (List<object>)want["rig_first"];
                for (int i = 0; i < rig.Count; i++) Check.Equal(Convert.ToDouble(rig[i]), (double)c.Rig[i], name + " rig " + i);
                if (c.Rig != null)
                {
                    // The pattern of docs/PROTOCOL.md: value n (row-major) is ((n mod 32) − 16) / 32; RigValue reads (frame, control).
                    for (int n = 0; n < c.Rig.Length; n++) Check.Equal((n % 32 - 16) / 32.0, (double)c.Rig[n], name + " rig value " + n);
                    int lf = c.Frames - 1, lc = c.Controls - 1;
                    Check.Equal(((lf * c.Controls + lc) % 32 - 16) / 32.0, (double)c.RigValue(lf, lc), name + " RigValue(frame, control)");
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
            Check.True(n >= 8, "expected the eight bad vectors, found " + n);
        }

        /// <summary>A 1×1 chunk of 2 frames, 2 samples and 3 controls; <paramref name="set"/> replaces header fields, and
        /// the parts given (not null) replace the right ones.</summary>
        private static List<byte[]> Chunk(byte[] video, byte[] pcm, byte[] rig, params KeyValuePair<string, object>[] set)
        {
            var h = new List<KeyValuePair<string, object>>
            {
                Protocol.F("v", 3L), Protocol.F("character", "a"), Protocol.F("utterance", 1L), Protocol.F("seq", 0L),
                Protocol.F("pts", 0.0), Protocol.F("width", 1L), Protocol.F("height", 1L), Protocol.F("frames", 2L),
                Protocol.F("fps", 25L), Protocol.F("sample_rate", 16000L), Protocol.F("samples", 2L),
                Protocol.F("eou", true), Protocol.F("interrupted", false), Protocol.F("video", true),
                Protocol.F("controls", 3L), Protocol.F("rig_version", 1L), Protocol.F("steps", 4L),
            };
            foreach (var kv in set) h[h.FindIndex(x => x.Key == kv.Key)] = kv;
            return new List<byte[]> { new byte[] { (byte)'a' }, MsgPackWriter.Encode(h), video ?? new byte[6], pcm ?? new byte[8],
                                      rig ?? MsgPackWriter.FloatBytes(new[] { 0f, 0.5f, 1f, 0.25f, 0.75f, -1f }) };
        }

        [Test]
        public static void MalformedInputsGiveClearErrorsNotCrashes()
        {
            var good = new List<byte[]> { new byte[] { (byte)'a' }, MsgPackWriter.Encode(new Dictionary<string, object> { { "v", 3L } }), new byte[0], new byte[0], new byte[0] };
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(good.Take(3).ToList()), "5 parts", "three parts");
            var four = Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(good.Take(4).ToList()), "5 parts", "four parts");
            Check.True(four.Message.Contains("version 1") && four.Message.Contains("update mf serve"), "a four-part message is named as version 1: " + four.Message);
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(good.Concat(good).ToList()), "5 parts", "ten parts");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(good), "must be an integer", "missing fields");
            Func<string, object, List<byte[]>> header = (field, value) => Chunk(null, null, null, Protocol.F(field, value));
            var none = new byte[0];
            var ok = Protocol.DecodeChunk(Chunk(null, null, null));
            Check.True(ok.HasVideo && ok.Video.Length == 6 && ok.Controls == 3 && ok.RigVersion == 1 && ok.Steps == 4, "a well-formed chunk decodes");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(Chunk(null, null, null, Protocol.F("steps", -1L))), "out of range", "negative steps");
            Check.Equal("0,0.5,1,0.25,0.75,-1", string.Join(",", ok.Rig), "its rig values, row-major");
            Check.Equal(0.75f, ok.RigValue(1, 1), "frame 1, control 1");
            var end = Protocol.DecodeChunk(Chunk(none, none, none, Protocol.F("frames", 0L), Protocol.F("samples", 0L), Protocol.F("controls", 0L)));
            Check.True(end.IsEndMarker && end.Rig == null && end.Pcm.Length == 0, "a well-formed end marker decodes");
            var rigOnly = Protocol.DecodeChunk(Chunk(none, null, null, Protocol.F("video", false)));
            Check.True(!rigOnly.HasVideo && rigOnly.Video.Length == 0 && rigOnly.Frames == 2 && rigOnly.Rig.Length == 6, "rig-only: no pixels, the frames count");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("video", false)), "video part", "pixels in a rig-only chunk");
            var noRig = Protocol.DecodeChunk(Chunk(null, null, none, Protocol.F("controls", 0L)));
            Check.True(noRig.Controls == 0 && noRig.Rig == null, "controls 0: no rig values");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("controls", 0L)), "rig part", "rig values the header does not announce");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(Chunk(null, null, new byte[20])), "rig part", "a short rig part");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(Chunk(null, new byte[4], null)), "pcm part", "a short pcm part");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("controls", 1L << 40)), "out of range", "a huge control count cannot overflow the size check");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("controls", -3L)), "out of range", "a negative control count");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("video", 1L)), "must be a bool", "an int for video");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("rig_version", "1")), "must be an integer", "a string rig_version");
            Check.Throws<ProtocolException>(() => Protocol.DecodeChunk(header("v", 1L)), "version", "a version-1 header in five parts");
            Check.True(Protocol.DecodeChunk(Chunk(none, none, none, Protocol.F("frames", 0L), Protocol.F("samples", 0L))).Rig.Length == 0, "no frames: an empty rig");
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
