#include "mfruntime/zmq_transport.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <zmq.hpp>

namespace mfruntime {

namespace {

void check_z85(const std::string& key, const char* what) {
  std::uint8_t raw[32];
  if (key.size() != 40 || zmq_z85_decode(raw, key.c_str()) == nullptr)
    throw std::invalid_argument(std::string("CURVE ") + what + " must be 40 characters of Z85 text (as in the key files " +
                                "mf keys writes), got " + std::to_string(key.size()) + " characters");
}

void secure(zmq::socket_t& s, const CurveKeys& k) {
  if (!k.enabled()) return;
  s.set(zmq::sockopt::curve_serverkey, k.server_public);
  s.set(zmq::sockopt::curve_publickey, k.client_public);
  s.set(zmq::sockopt::curve_secretkey, k.client_secret);
}

// A connection counts once its ZMTP handshake succeeded (with CURVE: once the server accepted our keys).
#ifdef ZMQ_EVENT_HANDSHAKE_SUCCEEDED
constexpr int kConnectedEvent = ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
#else
constexpr int kConnectedEvent = ZMQ_EVENT_CONNECTED;
#endif

// Attaches a monitor (an inproc PAIR) for `events` of `sock`; before connect(), so the first connection is seen.
void attach_monitor(zmq::socket_t& sock, zmq::socket_t& monitor, int events, const char* kind) {
  static std::atomic<unsigned long> next{0};
  const std::string endpoint = std::string("inproc://mfruntime-") + kind + "-monitor-" + std::to_string(++next);
  if (zmq_socket_monitor(sock.handle(), endpoint.c_str(), events) != 0) throw zmq::error_t();
  monitor.set(zmq::sockopt::linger, 0);
  monitor.connect(endpoint);
}

// Reads the monitor's pending events without waiting; calls on_event(id) for each. Each event is two frames:
// 6 bytes (uint16 event id, uint32 value, native byte order), then the endpoint.
template <typename F>
void drain_monitor(zmq::socket_t& monitor, F on_event) {
  zmq::message_t event;
  while (monitor && monitor.recv(event, zmq::recv_flags::dontwait)) {
    std::uint16_t id = 0;
    if (event.size() >= sizeof id) std::memcpy(&id, event.data(), sizeof id);
    while (event.more() && monitor.recv(event, zmq::recv_flags::dontwait)) {
    }
    on_event(id);
  }
}

class ZmqSubscriber : public Subscriber {
 public:
  ZmqSubscriber(std::shared_ptr<zmq::context_t> ctx, const CurveKeys& keys)
      : ctx_(std::move(ctx)), sock_(*ctx_, zmq::socket_type::sub), monitor_(*ctx_, zmq::socket_type::pair) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::rcvhwm, 1000);
    secure(sock_, keys);
    attach_monitor(sock_, monitor_, kConnectedEvent, "sub");
  }
  void connect(const std::string& address) override { sock_.connect(address); }
  void subscribe(const std::string& topic) override { sock_.set(zmq::sockopt::subscribe, topic); }
  bool receive(std::vector<Bytes>& parts, int timeout_ms) override {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return false;
    parts.clear();
    zmq::message_t msg;
    do {
      if (!sock_.recv(msg, zmq::recv_flags::none)) return false;
      const auto* p = static_cast<const std::uint8_t*>(msg.data());
      parts.emplace_back(p, p + msg.size());
    } while (msg.more());
    return true;
  }
  std::int64_t connections() override {
    drain_monitor(monitor_, [this](std::uint16_t id) {
      if (id == kConnectedEvent) ++connections_;
    });
    return connections_;
  }
  void close() override {
    if (sock_) zmq_socket_monitor(sock_.handle(), nullptr, 0);
    monitor_.close();
    sock_.close();
  }

 private:
  std::shared_ptr<zmq::context_t> ctx_;
  zmq::socket_t sock_;
  zmq::socket_t monitor_;
  std::int64_t connections_ = 0;
};

class ZmqDealer : public RequestChannel {
 public:
  ZmqDealer(std::shared_ptr<zmq::context_t> ctx, const CurveKeys& keys)
      : ctx_(std::move(ctx)), sock_(*ctx_, zmq::socket_type::dealer), monitor_(*ctx_, zmq::socket_type::pair),
        curve_(keys.enabled()) {
    sock_.set(zmq::sockopt::linger, 0);
    secure(sock_, keys);
    // TCP connections and completed ZMTP handshakes, to tell "nothing there" from "the wrong kind of socket there".
    attach_monitor(sock_, monitor_, ZMQ_EVENT_CONNECTED | kConnectedEvent, "dealer");
  }
  std::string diagnose() override {
    drain_monitor(monitor_, [this](std::uint16_t id) {
      if (id == ZMQ_EVENT_CONNECTED) ++tcp_;
      if (id == kConnectedEvent) ++handshakes_;
    });
    if (tcp_ == 0) return "nothing accepted the connection: is mf serve running there?";
    if (kConnectedEvent != ZMQ_EVENT_CONNECTED && handshakes_ == 0)
      return std::string("a connection was made but the ZeroMQ handshake never completed: is this mf serve's control "
                         "address (its --bind; the stream is the next port)?") +
             (curve_ ? " Are the CURVE keys the server's and an authorised client's?"
                     : " Does the server want CURVE keys?");
    return "connected, but the server did not answer in time (busy?)";
  }
  void close() override {
    if (sock_) zmq_socket_monitor(sock_.handle(), nullptr, 0);
    monitor_.close();
    sock_.close();
  }
  void connect(const std::string& address) override { sock_.connect(address); }
  void send(const Bytes& request) override {
    zmq::message_t msg(request.data(), request.size());
    // DEALER queues while the connection is (re)established; dontwait only fails when its queue is full.
    if (!sock_.send(msg, zmq::send_flags::dontwait))
      throw std::runtime_error("cannot send the request: the control socket's queue is full (server unreachable?)");
  }
  bool receive(Bytes& reply, int timeout_ms) override {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return false;
    zmq::message_t msg;
    if (!sock_.recv(msg, zmq::recv_flags::none)) return false;
    // One frame per reply; a stray multipart message keeps only its last frame.
    while (msg.more()) {
      if (!sock_.recv(msg, zmq::recv_flags::none)) return false;
    }
    const auto* p = static_cast<const std::uint8_t*>(msg.data());
    reply.assign(p, p + msg.size());
    return true;
  }

 private:
  std::shared_ptr<zmq::context_t> ctx_;
  zmq::socket_t sock_;
  zmq::socket_t monitor_;
  bool curve_;
  std::int64_t tcp_ = 0, handshakes_ = 0;
};

}  // namespace

Transport zmq_transport(const CurveKeys& keys) {
  if (keys.enabled()) {
    check_z85(keys.server_public, "server public key");
    check_z85(keys.client_public, "client public key");
    check_z85(keys.client_secret, "client secret key");
  }
  auto ctx = std::make_shared<zmq::context_t>(1);
  Transport t;
  t.make_subscriber = [ctx, keys]() -> std::unique_ptr<Subscriber> { return std::make_unique<ZmqSubscriber>(ctx, keys); };
  t.make_request_channel = [ctx, keys]() -> std::unique_ptr<RequestChannel> {
    return std::make_unique<ZmqDealer>(ctx, keys);
  };
  return t;
}

}  // namespace mfruntime
