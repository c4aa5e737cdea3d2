// mfruntime::Client: control requests to `mf serve` and a background receiver that feeds a Player.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mfruntime/player.hpp"
#include "mfruntime/protocol.hpp"
#include "mfruntime/transport.hpp"

namespace mfruntime {

struct ClientConfig {
  std::string control_address = "tcp://127.0.0.1:5555";
  std::string stream_address;  // "" = the control address with port + 1
  std::string character = "default";
  int output_rate = 48000;     // the engine's audio rate (Player::read_audio)
  int prebuffer_ms = 80;
  int output_latency_ms = 0;   // PlayerConfig::output_latency_ms: the engine's output buffering
  int max_queued_seconds = 120;  // PlayerConfig::max_queued_seconds
  /// false: chunks are not pushed into player() (for callers that only use on_chunk; the player then stays empty).
  bool use_player = true;
  int request_timeout_ms = 10000;
  CurveKeys curve;             // all empty: no CURVE; see load_curve_keys()
  Transport transport;         // empty: ZeroMQ (zmq_transport(curve))
  /// Called on the receive thread for every chunk of this character, after the player got it. Whatever it throws
  /// is caught and logged: the receive thread goes on.
  std::function<void(const StreamChunk&)> on_chunk;
  /// Called with one line per notable event (rejected message, server restart, timeout); from the receive thread
  /// too. Whatever it throws is swallowed.
  std::function<void(const std::string&)> on_log;
};

/// What a character's chunks carry (set_outputs' reply).
struct OutputSettings {
  bool video = true;  // false: rig-only mode (no pixels, the server skips its video decoder)
  bool rig = false;   // rig frames in the chunks (false also for a model without a rig head)
};

struct ClientStats {
  std::int64_t messages = 0;      // stream messages received (all characters under the subscribed prefix)
  std::int64_t bad_messages = 0;  // rejected by decode_chunk
  std::int64_t restarts = 0;      // server restarts detected: the stream reconnected or ids went back (player reset)
  std::int64_t timeouts = 0;      // requests without a reply in time
};

class Client {
 public:
  explicit Client(ClientConfig cfg = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Opens both sockets and starts the receive thread (libzmq connects and reconnects in the background). When the
  /// stream reconnects (Subscriber::connections rises) or its ids go backwards, the server restarted: the player is
  /// reset and client_stats().restarts counts it.
  /// A subscription needs a moment to reach the server: ping() once before the first say.
  /// Thread-safe: concurrent calls connect once. Requests made before connect() throw Error.
  void connect();
  /// Stops the receive thread and closes the sockets, promptly (a request waiting for its reply in another
  /// thread throws Error at once; the receive thread is woken from any back-off). Safe to call twice, and from
  /// any thread; the destructor calls it.
  void close();
  bool connected() const { return running_.load(); }

  // Requests: thread-safe, each waits for its own reply (matched by id). ServerError carries the server's
  // text; TimeoutError when no reply came within request_timeout_ms.
  Value ping();
  /// Returns the utterance id; its chunks may arrive before this returns.
  std::int64_t say(const std::string& text, const std::string& voice = "", int steps = 0);
  std::int64_t drive(const float* pcm, std::size_t count, int sample_rate, int steps = 0);
  /// Cuts playback locally at once (the newest utterance seen or started), then asks the server to stop.
  /// Returns the utterance the server cut (none when it was idle).
  std::optional<std::int64_t> interrupt();
  Value set_character_rgb(const Bytes& rgb, int width, int height, const std::string& voice = "",
                          const std::string& renderer = "", int size = 0);
  /// renderer: "auto", "model" or "portrait" (empty: auto, the model up to 128 px, a portrait above); size: a portrait's long
  /// side (0: the server's default). The reply says the renderer and frame size chosen.
  Value set_character_image(const Bytes& encoded, const std::string& voice = "", const std::string& renderer = "",
                            int size = 0);
  Value set_character_seed(std::int64_t face_seed, const std::string& voice = "");
  /// Target steps per chunk; min_steps > 0 also sets the floor the server may lower them to when this character's
  /// stream would fall behind (docs/RUNTIME.md, "Many characters"). Returns the steps.
  int set_steps(int steps, int min_steps = 0);
  /// What this character's chunks carry from its next utterance on: video = false is rig-only mode (audio and rig
  /// frames, empty video parts); nullopt leaves a setting as it is. Returns the settings now.
  OutputSettings set_outputs(std::optional<bool> video, std::optional<bool> rig = std::nullopt);
  /// Listening between lines: on = true makes the server stream idle chunks (silence, the mouth closed, blinks and
  /// a slow head sway) whenever this character has nothing to say; a say takes over at once. Returns the setting.
  bool set_idle(bool on);
  Value state();
  Value stats();
  /// Any request (e.g. an op newer than this client): {v, op, id} plus `fields` (a map).
  Value request(const std::string& op, const Value& fields = Value::map());

  Player& player() { return player_; }
  const ClientConfig& config() const { return cfg_; }
  const std::string& stream_address() const { return stream_address_; }
  ClientStats client_stats() const;
  /// Newest utterance id seen on the stream or returned by say/drive (0: none).
  std::int64_t newest_utterance() const;

 private:
  Value roundtrip(const std::string& op, const std::function<Bytes(std::int64_t)>& encode);
  void receive_loop();
  void receive_one();  // receive thread: one poll, and the message if one came
  void log(const std::string& line) const;
  void open_request_channel();
  void restarted(const std::string& why);  // receive thread

  ClientConfig cfg_;
  std::string stream_address_;
  Player player_;
  Transport transport_;
  std::mutex connect_mu_;  // connect() and close()
  std::mutex req_mu_;
  std::atomic<bool> closing_{false};  // close() under way: requests give up at once
  std::mutex wake_mu_;
  std::condition_variable wake_;      // wakes the receive thread's back-off when closing
  std::unique_ptr<RequestChannel> req_;
  std::int64_t next_id_ = 1;
  std::unique_ptr<Subscriber> sub_;
  std::thread rx_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> newest_stream_{0}, newest_said_{0};
  std::vector<Bytes> parts_;    // receive thread only
  std::int64_t last_seq_ = -1;  // receive thread only
  std::int64_t seen_connections_ = 0;  // receive thread only: Subscriber::connections() last seen
  mutable std::mutex stats_mu_;
  ClientStats stats_;
};

/// "tcp://host:5555" → "tcp://host:5556". Throws std::invalid_argument when the address has no port.
std::string default_stream_address(const std::string& control_address);

}  // namespace mfruntime
