// The ZeroMQ transport (cppzmq): SUB for the stream, DEALER for control; libzmq reconnects by itself. The SUB socket
// counts its connections with a libzmq socket monitor (Subscriber::connections).
#pragma once

#include "mfruntime/transport.hpp"

namespace mfruntime {

/// ZeroMQ channels on one shared context. With CURVE keys (all three) every socket is a CURVE client of the
/// server; otherwise the NULL mechanism. Throws std::invalid_argument for keys that are not 40-character Z85.
Transport zmq_transport(const CurveKeys& keys = {});

}  // namespace mfruntime
