// The transport the client talks through. The default is ZeroMQ (zmq_transport.hpp); a studio with its own
// messaging layer implements these two interfaces and passes factories in ClientConfig::transport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mfruntime/value.hpp"

namespace mfruntime {

/// The stream side: a subscriber to multipart messages (ZeroMQ SUB semantics: topics are byte prefixes).
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void connect(const std::string& address) = 0;
  virtual void subscribe(const std::string& topic) = 0;
  /// Waits up to timeout_ms for one multipart message; false on timeout (parts untouched).
  virtual bool receive(std::vector<Bytes>& parts, int timeout_ms) = 0;
  virtual void close() = 0;
  /// How many times a connection to the publisher was established so far (called on the receive thread). A rise
  /// after the first means the stream reconnected: the server may have restarted. 0: this transport cannot tell
  /// (the client then notices a restart only by utterance ids going backwards).
  virtual std::int64_t connections() { return 0; }
};

/// The control side: requests out, replies in (ZeroMQ DEALER semantics: several requests may be in flight;
/// the caller matches replies to requests by their id).
class RequestChannel {
 public:
  virtual ~RequestChannel() = default;
  virtual void connect(const std::string& address) = 0;
  virtual void send(const Bytes& request) = 0;
  /// Waits up to timeout_ms for one reply; false on timeout.
  virtual bool receive(Bytes& reply, int timeout_ms) = 0;
  /// Why no reply may have come, for the timeout error ("" when the transport cannot tell).
  virtual std::string diagnose() { return ""; }
  virtual void close() = 0;
};

/// Factories for the client's channels (each call makes a fresh, unconnected one).
struct Transport {
  std::function<std::unique_ptr<Subscriber>()> make_subscriber;
  std::function<std::unique_ptr<RequestChannel>()> make_request_channel;
};

/// CURVE keys as Z85 text (40 characters each), as written by `mf keys`. All empty: no CURVE (NULL mechanism).
struct CurveKeys {
  std::string server_public;  // the server's public key (its NAME.key)
  std::string client_public;  // this client's pair (its NAME.key_secret holds both)
  std::string client_secret;
  bool enabled() const { return !server_public.empty() || !client_public.empty() || !client_secret.empty(); }
};

/// Reads CURVE keys from the certificate files `mf keys` writes (ZeroMQ's format: lines
/// `public-key = "..."` and `secret-key = "..."`). Throws std::runtime_error with what to do.
CurveKeys load_curve_keys(const std::string& server_public_file, const std::string& client_secret_file);

}  // namespace mfruntime
