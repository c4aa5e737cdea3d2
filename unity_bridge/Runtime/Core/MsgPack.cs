// MessagePack, the subset the mf serve protocol uses: nil, bool, integers, float32/64, str, bin, array and maps
// with string keys. Decoded values are null, bool, long (ulong above long.MaxValue), double, string, byte[],
// List<object> and Dictionary<string, object>. Limits follow docs/PROTOCOL.md so a hostile peer cannot make the
// reader allocate gigabytes.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Mfruntime
{
    /// <summary>Raised for bytes that are not a well-formed message of the supported MessagePack subset.</summary>
    public sealed class MsgPackException : Exception
    {
        public MsgPackException(string message) : base(message) { }
    }

    public static class MsgPackReader
    {
        public const int MaxBytes = 32 * 1024 * 1024;  // str and bin
        public const int MaxArray = 100000;
        public const int MaxMap = 1000;
        public const int MaxDepth = 32;

        /// <summary>Decode exactly one value that fills <paramref name="data"/>; anything else is an error.</summary>
        public static object Decode(byte[] data)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            return Decode(data, 0, data.Length);
        }

        public static object Decode(byte[] data, int offset, int count)
        {
            var r = new Cursor(data, offset, count);
            object value = r.Value(0);
            if (r.Pos != offset + count)
                throw new MsgPackException("not a msgpack message: " + (offset + count - r.Pos) + " bytes after the value");
            return value;
        }

        private sealed class Cursor
        {
            private readonly byte[] d;
            private readonly int end;
            public int Pos;

            public Cursor(byte[] data, int offset, int count)
            {
                if (offset < 0 || count < 0 || offset + count > data.Length) throw new ArgumentOutOfRangeException(nameof(count));
                d = data; Pos = offset; end = offset + count;
            }

            private void Need(int n)
            {
                if (n < 0 || end - Pos < n) throw new MsgPackException("not a msgpack message: truncated");
            }

            private byte U8() { Need(1); return d[Pos++]; }

            private ulong BigEndian(int n)
            {
                Need(n);
                ulong v = 0;
                for (int i = 0; i < n; i++) v = (v << 8) | d[Pos + i];
                Pos += n;
                return v;
            }

            private int Length(int n, int limit, string what)
            {
                ulong v = BigEndian(n);
                if (v > (ulong)limit) throw new MsgPackException(what + " of " + v + " exceeds the limit of " + limit);
                return (int)v;
            }

            private byte[] Bytes(int n)
            {
                Need(n);
                var b = new byte[n];
                Buffer.BlockCopy(d, Pos, b, 0, n);
                Pos += n;
                return b;
            }

            private string Str(int n)
            {
                Need(n);
                string s;
                try { s = new UTF8Encoding(false, true).GetString(d, Pos, n); }
                catch (ArgumentException) { throw new MsgPackException("a msgpack str is not valid UTF-8"); }
                Pos += n;
                return s;
            }

            public object Value(int depth)
            {
                if (depth > MaxDepth) throw new MsgPackException("msgpack nesting deeper than " + MaxDepth);
                byte b = U8();
                if (b <= 0x7f) return (long)b;
                if (b >= 0xe0) return (long)(sbyte)b;
                if ((b & 0xe0) == 0xa0) return Str(b & 0x1f);
                if ((b & 0xf0) == 0x90) return Array(b & 0x0f, depth);
                if ((b & 0xf0) == 0x80) return Map(b & 0x0f, depth);
                switch (b)
                {
                    case 0xc0: return null;
                    case 0xc2: return false;
                    case 0xc3: return true;
                    case 0xc4: return Bytes(Length(1, MaxBytes, "bin"));
                    case 0xc5: return Bytes(Length(2, MaxBytes, "bin"));
                    case 0xc6: return Bytes(Length(4, MaxBytes, "bin"));
                    case 0xca: return (double)BitConverter.ToSingle(Reverse(4), 0);
                    case 0xcb: return BitConverter.ToDouble(Reverse(8), 0);
                    case 0xcc: return (long)BigEndian(1);
                    case 0xcd: return (long)BigEndian(2);
                    case 0xce: return (long)BigEndian(4);
                    case 0xcf: { ulong v = BigEndian(8); return v <= long.MaxValue ? (object)(long)v : v; }
                    case 0xd0: return (long)(sbyte)BigEndian(1);
                    case 0xd1: return (long)(short)BigEndian(2);
                    case 0xd2: return (long)(int)BigEndian(4);
                    case 0xd3: return (long)BigEndian(8);
                    case 0xd9: return Str(Length(1, MaxBytes, "str"));
                    case 0xda: return Str(Length(2, MaxBytes, "str"));
                    case 0xdb: return Str(Length(4, MaxBytes, "str"));
                    case 0xdc: return Array(Length(2, MaxArray, "array"), depth);
                    case 0xdd: return Array(Length(4, MaxArray, "array"), depth);
                    case 0xde: return Map(Length(2, MaxMap, "map"), depth);
                    case 0xdf: return Map(Length(4, MaxMap, "map"), depth);
                }
                throw new MsgPackException(string.Format("not a msgpack message: type byte 0x{0:x2} is not supported", b));
            }

            /// <summary>The next n bytes in little-endian order (floats are big-endian on the wire).</summary>
            private byte[] Reverse(int n)
            {
                byte[] b = Bytes(n);
                if (BitConverter.IsLittleEndian) System.Array.Reverse(b);
                return b;
            }

            private List<object> Array(int n, int depth)
            {
                var list = new List<object>(Math.Min(n, 1024));
                for (int i = 0; i < n; i++) list.Add(Value(depth + 1));
                return list;
            }

            private Dictionary<string, object> Map(int n, int depth)
            {
                var map = new Dictionary<string, object>(Math.Min(n, 64));
                for (int i = 0; i < n; i++)
                {
                    var key = Value(depth + 1) as string;
                    if (key == null) throw new MsgPackException("msgpack map keys must be strings here");
                    if (map.ContainsKey(key)) throw new MsgPackException("msgpack map has the key '" + key + "' twice");
                    map[key] = Value(depth + 1);
                }
                return map;
            }
        }
    }

    /// <summary>Writes the same subset. Maps keep the order their entries are given in.</summary>
    public sealed class MsgPackWriter
    {
        private readonly MemoryStream s = new MemoryStream();

        public byte[] ToArray() { return s.ToArray(); }

        /// <summary>Encode one value: null, bool, any integer type, float/double, string, byte[], float[] (as bin,
        /// float32 little-endian), IList of values, or a list of key/value pairs (a map in that order).</summary>
        public static byte[] Encode(object value)
        {
            var w = new MsgPackWriter();
            w.Write(value);
            return w.ToArray();
        }

        public void Write(object v)
        {
            if (v == null) { s.WriteByte(0xc0); return; }
            if (v is bool) { s.WriteByte((bool)v ? (byte)0xc3 : (byte)0xc2); return; }
            if (v is string) { WriteString((string)v); return; }
            if (v is byte[]) { WriteBin((byte[])v); return; }
            if (v is float[]) { WriteBin(FloatBytes((float[])v)); return; }
            if (v is double || v is float) { WriteDouble(Convert.ToDouble(v)); return; }
            if (v is ulong) { WriteUnsigned((ulong)v); return; }
            if (v is long || v is int || v is short || v is sbyte || v is byte || v is ushort || v is uint)
            {
                WriteInt(Convert.ToInt64(v)); return;
            }
            var pairs = v as IList<KeyValuePair<string, object>>;
            if (pairs != null)
            {
                WriteMapHeader(pairs.Count);
                foreach (var kv in pairs) { WriteString(kv.Key); Write(kv.Value); }
                return;
            }
            var dict = v as IDictionary<string, object>;
            if (dict != null)
            {
                WriteMapHeader(dict.Count);
                foreach (var kv in dict) { WriteString(kv.Key); Write(kv.Value); }
                return;
            }
            var list = v as System.Collections.IList;
            if (list != null)
            {
                WriteHeader(list.Count, 0x90, 15, 0xdc, 0xdd);
                foreach (var item in list) Write(item);
                return;
            }
            throw new ArgumentException("cannot write a " + v.GetType().Name + " as msgpack");
        }

        public void WriteMapHeader(int n) { WriteHeader(n, 0x80, 15, 0xde, 0xdf); }

        public void WriteInt(long v)
        {
            if (v >= 0) { WriteUnsigned((ulong)v); return; }
            if (v >= -32) { s.WriteByte((byte)(sbyte)v); return; }
            if (v >= sbyte.MinValue) { s.WriteByte(0xd0); Big((ulong)v, 1); return; }
            if (v >= short.MinValue) { s.WriteByte(0xd1); Big((ulong)v, 2); return; }
            if (v >= int.MinValue) { s.WriteByte(0xd2); Big((ulong)v, 4); return; }
            s.WriteByte(0xd3); Big((ulong)v, 8);
        }

        private void WriteUnsigned(ulong v)
        {
            if (v <= 0x7f) { s.WriteByte((byte)v); return; }
            if (v <= byte.MaxValue) { s.WriteByte(0xcc); Big(v, 1); return; }
            if (v <= ushort.MaxValue) { s.WriteByte(0xcd); Big(v, 2); return; }
            if (v <= uint.MaxValue) { s.WriteByte(0xce); Big(v, 4); return; }
            s.WriteByte(0xcf); Big(v, 8);
        }

        public void WriteDouble(double v)
        {
            s.WriteByte(0xcb);
            Big((ulong)BitConverter.DoubleToInt64Bits(v), 8);
        }

        public void WriteString(string v)
        {
            byte[] b = Encoding.UTF8.GetBytes(v);
            if (b.Length <= 31) s.WriteByte((byte)(0xa0 | b.Length));
            else if (b.Length <= byte.MaxValue) { s.WriteByte(0xd9); Big((ulong)b.Length, 1); }
            else if (b.Length <= ushort.MaxValue) { s.WriteByte(0xda); Big((ulong)b.Length, 2); }
            else { s.WriteByte(0xdb); Big((ulong)b.Length, 4); }
            s.Write(b, 0, b.Length);
        }

        public void WriteBin(byte[] b)
        {
            if (b.Length <= byte.MaxValue) { s.WriteByte(0xc4); Big((ulong)b.Length, 1); }
            else if (b.Length <= ushort.MaxValue) { s.WriteByte(0xc5); Big((ulong)b.Length, 2); }
            else { s.WriteByte(0xc6); Big((ulong)b.Length, 4); }
            s.Write(b, 0, b.Length);
        }

        /// <summary>float32 samples as little-endian bytes (the protocol's pcm layout).</summary>
        public static byte[] FloatBytes(float[] samples)
        {
            var b = new byte[samples.Length * 4];
            Buffer.BlockCopy(samples, 0, b, 0, b.Length);
            if (!BitConverter.IsLittleEndian)
                for (int i = 0; i < b.Length; i += 4) { System.Array.Reverse(b, i, 4); }
            return b;
        }

        private void WriteHeader(int n, int fix, int fixMax, byte b16, byte b32)
        {
            if (n <= fixMax) s.WriteByte((byte)(fix | n));
            else if (n <= ushort.MaxValue) { s.WriteByte(b16); Big((ulong)n, 2); }
            else { s.WriteByte(b32); Big((ulong)n, 4); }
        }

        private void Big(ulong v, int n)
        {
            for (int i = n - 1; i >= 0; i--) s.WriteByte((byte)(v >> (8 * i)));
        }
    }
}
