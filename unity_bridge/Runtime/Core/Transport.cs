// The seam between the client and its message transport. The package's own transport is ZmtpTransport (ZeroMQ's
// wire protocol over System.Net.Sockets, NULL security); a studio that ships NetMQ or its own ZeroMQ binding can
// implement these two interfaces instead (e.g. for CURVE-encrypted remote links).
using System;
using System.Collections.Generic;

namespace Mfruntime
{
    /// <summary>A transport failed: not connected in time, the peer is not a ZeroMQ peer of the right kind, ...</summary>
    public sealed class TransportException : Exception
    {
        public TransportException(string message) : base(message) { }
        public TransportException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>One ZeroMQ-style socket connected to one endpoint: multipart messages in and out. Implementations
    /// reconnect by themselves and are safe to use from one sending thread and one receiving thread at once.</summary>
    public interface IMessageSocket : IDisposable
    {
        /// <summary>Send one multipart message; waits up to <paramref name="timeout"/> for a connection.</summary>
        void Send(IList<byte[]> parts, TimeSpan timeout);

        /// <summary>The next message, or false when none came within <paramref name="timeout"/>.</summary>
        bool TryReceive(TimeSpan timeout, out List<byte[]> parts);

        /// <summary>How many times the connection was (re)established; a change means the peer may have restarted.</summary>
        int Connections { get; }
    }

    public interface ITransport
    {
        /// <summary>A SUB socket on <paramref name="endpoint"/> subscribed to the byte prefix <paramref name="topic"/>.</summary>
        IMessageSocket Subscribe(string endpoint, byte[] topic);

        /// <summary>A DEALER socket on <paramref name="endpoint"/>.</summary>
        IMessageSocket Dealer(string endpoint);
    }
}
