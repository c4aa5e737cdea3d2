// ZeroMQ's wire protocol (ZMTP 3.0, NULL mechanism) over a plain TCP socket, for the two socket types a client of
// mf serve needs: SUB (stream) and DEALER (control). No native plugin, so it runs on every target that has
// System.Net.Sockets. Each ZmtpSocket owns one connection and a reader thread that reconnects with back-off when
// the connection drops (e.g. the server restarted), like libzmq does.
//
// Wire format (ZMTP 3.0): a 64-byte greeting each way (signature FF 00×8 7F, version 3.0, mechanism "NULL",
// as-server 0, filler), then a READY command each way carrying the Socket-Type property, then frames:
// flags (bit 0 MORE, bit 1 LONG size, bit 2 COMMAND), size (1 byte, or 8 bytes big-endian with LONG), body.
// A 3.0 SUB subscribes by sending the message [0x01, prefix...].
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Mfruntime
{
    public sealed class ZmtpTransport : ITransport
    {
        /// <summary>Largest message accepted from a peer (a stream chunk at 512 px is ~3 MB).</summary>
        public long MaxMessageBytes = 64L * 1024 * 1024;

        public IMessageSocket Subscribe(string endpoint, byte[] topic)
        {
            var sub = new byte[topic.Length + 1];
            sub[0] = 1;
            Buffer.BlockCopy(topic, 0, sub, 1, topic.Length);
            return new ZmtpSocket("SUB", new[] { "PUB", "XPUB" }, endpoint, MaxMessageBytes, new[] { sub });
        }

        public IMessageSocket Dealer(string endpoint)
        {
            return new ZmtpSocket("DEALER", new[] { "ROUTER" }, endpoint, MaxMessageBytes, new byte[0][]);
        }
    }

    public sealed class ZmtpSocket : IMessageSocket
    {
        private const int ReceiveQueueLimit = 1024;  // messages; beyond this the oldest are dropped, like a HWM
        private const long ReceiveQueueBytes = 256L * 1024 * 1024;  // and beyond this many bytes
        private const int HandshakeTimeoutMs = 5000;
        private readonly string type, host;
        private readonly string[] peerTypes;
        private readonly int port;
        private readonly long maxMessage;
        private readonly byte[][] onConnect;  // messages sent after each handshake (subscriptions)
        private readonly BlockingCollection<List<byte[]>> inbox = new BlockingCollection<List<byte[]>>();
        private readonly object sendLock = new object();
        private readonly ManualResetEventSlim connected = new ManualResetEventSlim(false);
        private readonly ManualResetEventSlim stopping = new ManualResetEventSlim(false);
        private long queuedBytes;
        private readonly Thread reader;
        private volatile bool closed;
        private volatile Socket socket;  // the connected socket (after its handshake)
        private volatile Socket connecting;  // the socket being connected or greeted, so Dispose can abort it
        private Stream stream;
        private int connections;

        public int Connections { get { return Volatile.Read(ref connections); } }

        /// <summary>Messages dropped because nobody read them (the receive queue was full).</summary>
        public long Dropped;

        /// <summary>The last connection error, for logs (null while connected).</summary>
        public volatile string LastError;

        public ZmtpSocket(string type, string[] peerTypes, string endpoint, long maxMessage, byte[][] onConnect)
        {
            this.type = type; this.peerTypes = peerTypes; this.maxMessage = maxMessage; this.onConnect = onConnect;
            ParseEndpoint(endpoint, out host, out port);
            reader = new Thread(Run) { IsBackground = true, Name = "mfruntime " + type + " " + endpoint };
            reader.Start();
        }

        /// <summary>"tcp://host:port" → host, port (the only transport mf serve offers to engines).</summary>
        public static void ParseEndpoint(string endpoint, out string host, out int port)
        {
            const string scheme = "tcp://";
            if (endpoint == null || !endpoint.StartsWith(scheme, StringComparison.Ordinal))
                throw new ArgumentException("address must look like tcp://127.0.0.1:5555, got '" + endpoint + "'");
            string rest = endpoint.Substring(scheme.Length);
            int colon = rest.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(rest.Substring(colon + 1), out port) || port <= 0 || port > 65535)
                throw new ArgumentException("address must end in a port number 1-65535, like tcp://127.0.0.1:5555, got '" + endpoint + "'");
            host = rest.Substring(0, colon).Trim('[', ']');
        }

        public void Send(IList<byte[]> parts, TimeSpan timeout)
        {
            if (closed) throw new ObjectDisposedException("ZmtpSocket");
            if (!connected.Wait(timeout))
                throw new TransportException("not connected to tcp://" + host + ":" + port + " within " + timeout.TotalSeconds +
                                             " s" + (LastError != null ? " (" + LastError + ")" : "") + "; is mf serve running there?");
            lock (sendLock)
            {
                try { WriteMessage(stream, parts, false); }
                catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
                {
                    Drop(e);
                    throw new TransportException("the connection to tcp://" + host + ":" + port + " dropped while sending", e);
                }
            }
        }

        public bool TryReceive(TimeSpan timeout, out List<byte[]> parts)
        {
            if (closed) { parts = null; return false; }
            try
            {
                if (!inbox.TryTake(out parts, timeout)) return false;
                Interlocked.Add(ref queuedBytes, -Size(parts));
                return true;
            }
            catch (ObjectDisposedException) { parts = null; return false; }
            catch (InvalidOperationException) { parts = null; return false; }  // completed: the socket was closed
        }

        /// <summary>Close the connection and stop the reader thread (it is woken at once, even mid-connect).</summary>
        public void Dispose()
        {
            if (closed) return;
            closed = true;
            stopping.Set();
            Drop(null);
            var c = connecting;
            if (c != null) { try { c.Close(0); } catch (Exception) { } }
            reader.Join(500);
        }

        private static long Size(List<byte[]> parts)
        {
            long n = 0;
            foreach (var p in parts) n += p.Length;
            return n;
        }

        private void Drop(Exception why)
        {
            connected.Reset();
            var s = socket;
            socket = null;
            if (why != null) LastError = why.Message;
            if (s != null) { try { s.Close(0); } catch (Exception) { } }
        }

        // --- the reader thread: connect, handshake, read messages; reconnect with back-off ----------------------
        private void Run()
        {
            int backoffMs = 100;
            while (!closed)
            {
                Socket s = null;
                try
                {
                    // IPv4 or IPv6, whichever the host resolves to (a dual-mode socket fails where IPv6 is off).
                    var addresses = Dns.GetHostAddresses(host);
                    if (addresses.Length == 0) throw new TransportException("cannot resolve " + host);
                    var address = Array.Find(addresses, a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses[0];
                    s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    connecting = s;
                    if (closed) break;
                    s.Connect(address, port);
                    s.ReceiveTimeout = HandshakeTimeoutMs;  // a peer that accepts but never greets
                    var ns = new NetworkStream(s, false);
                    var input = new BufferedStream(ns, 1 << 16);
                    Handshake(ns, input);
                    s.ReceiveTimeout = 0;
                    connecting = null;
                    // Messages still queued from a previous connection belong to a server that may be gone.
                    List<byte[]> stale;
                    while (inbox.TryTake(out stale)) Interlocked.Add(ref queuedBytes, -Size(stale));
                    lock (sendLock)
                    {
                        stream = ns;
                        socket = s;
                        foreach (var m in onConnect) WriteMessage(ns, new[] { m }, false);
                    }
                    Interlocked.Increment(ref connections);
                    LastError = null;
                    connected.Set();
                    backoffMs = 100;
                    while (!closed)
                    {
                        List<byte[]> msg = ReadMessage(input, ns);
                        if (msg == null) continue;  // a command (e.g. PING) was handled
                        List<byte[]> old;
                        while ((inbox.Count >= ReceiveQueueLimit || Interlocked.Read(ref queuedBytes) > ReceiveQueueBytes) && inbox.TryTake(out old))
                        {
                            Interlocked.Add(ref queuedBytes, -Size(old));
                            Interlocked.Increment(ref Dropped);
                        }
                        Interlocked.Add(ref queuedBytes, Size(msg));
                        inbox.Add(msg);
                    }
                }
                catch (Exception e)  // whatever went wrong with this connection, the next one may work
                {
                    if (!closed) LastError = e.Message;
                }
                finally
                {
                    connected.Reset();
                    connecting = null;
                    if (socket == s) socket = null;
                    if (s != null) { try { s.Close(0); } catch (Exception) { } }
                }
                if (closed || stopping.Wait(backoffMs)) break;  // back-off that Dispose can cut short
                backoffMs = Math.Min(2000, backoffMs * 2);
            }
            inbox.CompleteAdding();
        }

        private void Handshake(Stream output, Stream input)
        {
            var greeting = new byte[64];
            greeting[0] = 0xFF;
            greeting[9] = 0x7F;
            greeting[10] = 3;  // version 3.0
            greeting[11] = 0;
            Encoding.ASCII.GetBytes("NULL", 0, 4, greeting, 12);
            // Signature and major version first; the rest once the peer's greeting is in (as libzmq does), so a
            // server with another security mechanism shows it before it drops the connection.
            output.Write(greeting, 0, 11);
            output.Flush();
            var peer = ReadExactly(input, 64);
            if (peer[0] != 0xFF || (peer[9] & 1) != 1)
                throw new TransportException("the peer at tcp://" + host + ":" + port + " is not a ZeroMQ socket");
            if (peer[10] < 3)
                throw new TransportException("the peer speaks ZMTP " + peer[10] + ".x; this client needs 3.0 or later");
            string mechanism = Encoding.ASCII.GetString(peer, 12, 20).TrimEnd('\0');
            if (mechanism != "NULL")
                throw new TransportException("the server uses the " + mechanism + " security mechanism; this transport speaks " +
                                             "NULL only (use the native client or a NetMQ transport for CURVE)");
            output.Write(greeting, 11, greeting.Length - 11);
            var ready = new MemoryStream();
            ready.WriteByte(5);
            ready.Write(Encoding.ASCII.GetBytes("READY"), 0, 5);
            WriteProperty(ready, "Socket-Type", type);
            if (type == "DEALER") WriteProperty(ready, "Identity", "");
            WriteFrame(output, ready.ToArray(), false, true);
            output.Flush();
            byte flags;
            byte[] cmd;
            try { cmd = ReadFrame(input, out flags); }
            catch (IOException e)
            {
                // libzmq hangs up here when our socket type does not fit its own (e.g. the stream port given as the
                // control address).
                throw new TransportException("the peer closed the connection during the handshake: it does not take a " + type +
                                             " socket. Is this the right port? mf serve's control address is its --bind, " +
                                             "the stream is the control port + 1", e);
            }
            if ((flags & 4) == 0) throw new TransportException("the peer sent a message before its READY command");
            string name = CommandName(cmd);
            if (name == "ERROR")
            {
                int n = cmd.Length > 6 ? Math.Max(0, Math.Min(cmd[6], cmd.Length - 7)) : 0;
                throw new TransportException("the server refused the connection: " + (n > 0 ? Encoding.UTF8.GetString(cmd, 7, n) : "no reason given"));
            }
            if (name != "READY") throw new TransportException("the peer sent " + name + " instead of READY");
            string socketType = ReadProperties(cmd, 6).TryGetValue("Socket-Type", out var st) ? st : "";
            if (Array.IndexOf(peerTypes, socketType) < 0)
                throw new TransportException("the peer is a " + socketType + " socket, a " + type + " needs a " + string.Join(" or ", peerTypes) +
                                             " (is this the right port? the stream is the control port + 1)");
        }

        private static void WriteProperty(Stream s, string name, string value)
        {
            byte[] n = Encoding.ASCII.GetBytes(name), v = Encoding.ASCII.GetBytes(value);
            s.WriteByte((byte)n.Length);
            s.Write(n, 0, n.Length);
            s.WriteByte((byte)(v.Length >> 24)); s.WriteByte((byte)(v.Length >> 16));
            s.WriteByte((byte)(v.Length >> 8)); s.WriteByte((byte)v.Length);
            s.Write(v, 0, v.Length);
        }

        private static string CommandName(byte[] cmd)
        {
            if (cmd.Length < 1 || cmd[0] + 1 > cmd.Length) throw new TransportException("a malformed ZMTP command");
            return Encoding.ASCII.GetString(cmd, 1, cmd[0]);
        }

        private static Dictionary<string, string> ReadProperties(byte[] cmd, int at)
        {
            var props = new Dictionary<string, string>();
            while (at < cmd.Length)
            {
                int nl = cmd[at++];
                if (at + nl + 4 > cmd.Length) throw new TransportException("a malformed ZMTP property");
                string name = Encoding.ASCII.GetString(cmd, at, nl);
                at += nl;
                long vl = ((long)cmd[at] << 24) | ((long)cmd[at + 1] << 16) | ((long)cmd[at + 2] << 8) | cmd[at + 3];
                at += 4;
                if (at + vl > cmd.Length) throw new TransportException("a malformed ZMTP property");
                props[name] = Encoding.ASCII.GetString(cmd, at, (int)vl);
                at += (int)vl;
            }
            return props;
        }

        /// <summary>One message, or null after handling a command frame.</summary>
        private List<byte[]> ReadMessage(Stream input, Stream output)
        {
            var parts = new List<byte[]>(4);
            long total = 0;
            while (true)
            {
                byte flags;
                byte[] body = ReadFrame(input, out flags, maxMessage - total);
                total += body.Length;
                if ((flags & 4) != 0)
                {
                    if (parts.Count > 0) throw new TransportException("a ZMTP command inside a multipart message");
                    if (CommandName(body) == "PING")  // ZMTP 3.1 heartbeat: answer with PONG and the context
                    {
                        int ttlEnd = 1 + 4 + 2;
                        var pong = new MemoryStream();
                        pong.WriteByte(4);
                        pong.Write(Encoding.ASCII.GetBytes("PONG"), 0, 4);
                        if (body.Length > ttlEnd) pong.Write(body, ttlEnd, body.Length - ttlEnd);
                        lock (sendLock) { WriteFrame(output, pong.ToArray(), false, true); output.Flush(); }
                    }
                    return null;
                }
                parts.Add(body);
                if ((flags & 1) == 0) return parts;
            }
        }

        private static byte[] ReadFrame(Stream input, out byte flags, long limit = 1 << 20)
        {
            flags = ReadExactly(input, 1)[0];
            if ((flags & 0xF8) != 0) throw new TransportException("a malformed ZMTP frame (flags " + flags + ")");
            long size;
            if ((flags & 2) != 0)
            {
                byte[] b = ReadExactly(input, 8);
                size = 0;
                for (int i = 0; i < 8; i++) size = (size << 8) | b[i];
            }
            else size = ReadExactly(input, 1)[0];
            if (size < 0 || size > limit)
                throw new TransportException("the peer sent a message of more than " + limit + " bytes; dropping the connection");
            return ReadExactly(input, (int)size);
        }

        private static byte[] ReadExactly(Stream s, int n)
        {
            var b = new byte[n];
            int got = 0;
            while (got < n)
            {
                int k = s.Read(b, got, n - got);
                if (k <= 0) throw new IOException("the connection closed");
                got += k;
            }
            return b;
        }

        private static void WriteMessage(Stream s, IList<byte[]> parts, bool command)
        {
            for (int i = 0; i < parts.Count; i++) WriteFrame(s, parts[i], i < parts.Count - 1, command);
            s.Flush();
        }

        private static void WriteFrame(Stream s, byte[] body, bool more, bool command)
        {
            bool big = body.Length > 255;
            byte flags = (byte)((more ? 1 : 0) | (big ? 2 : 0) | (command ? 4 : 0));
            var head = new byte[big ? 9 : 2];
            head[0] = flags;
            if (big) { long n = body.Length; for (int i = 0; i < 8; i++) head[1 + i] = (byte)(n >> (8 * (7 - i))); }
            else head[1] = (byte)body.Length;
            s.Write(head, 0, head.Length);
            s.Write(body, 0, body.Length);
        }
    }
}
