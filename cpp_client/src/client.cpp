#include "mfruntime/client.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "mfruntime/zmq_transport.hpp"

namespace mfruntime {

std::string default_stream_address(const std::string& control) {
  std::size_t colon = control.rfind(':');
  std::size_t digits = colon == std::string::npos ? 0 : control.size() - colon - 1;
  if (colon == std::string::npos || digits == 0 || digits > 5 ||
      control.find_first_not_of("0123456789", colon + 1) != std::string::npos)
    throw std::invalid_argument("cannot derive the stream address from '" + control +
                                "' (no port): set ClientConfig::stream_address");
  int port = std::stoi(control.substr(colon + 1));
  if (port <= 0 || port >= 65535)
    throw std::invalid_argument("control port " + std::to_string(port) + " has no next port for the stream");
  return control.substr(0, colon + 1) + std::to_string(port + 1);
}

namespace {
// A ZeroMQ endpoint as mf serve gives it ("tcp://host:port"); libzmq's own error for a bare host:port is only
// "Invalid argument".
const std::string& checked_address(const std::string& address, const char* what) {
  if (address.find("://") == std::string::npos)
    throw std::invalid_argument(std::string(what) + " must look like tcp://127.0.0.1:5555, got '" + address + "'");
  return address;
}

PlayerConfig player_config(const ClientConfig& c) {
  PlayerConfig p;
  p.character = c.character;
  p.output_rate = c.output_rate;
  p.prebuffer_ms = c.prebuffer_ms;
  p.output_latency_ms = c.output_latency_ms;
  p.max_queued_seconds = c.max_queued_seconds;
  return p;
}
}  // namespace

Client::Client(ClientConfig cfg)
    : cfg_(std::move(cfg)),
      stream_address_(checked_address(cfg_.stream_address.empty()
                                          ? default_stream_address(checked_address(cfg_.control_address, "control_address"))
                                          : cfg_.stream_address,
                                      "stream_address")),
      player_(player_config(cfg_)) {
  if (cfg_.character.empty() || cfg_.character.size() > 64)
    throw std::invalid_argument("character id must be 1-64 bytes, got '" + cfg_.character + "'");
  if (cfg_.request_timeout_ms <= 0) throw std::invalid_argument("request_timeout_ms must be > 0");
}

Client::~Client() { close(); }

void Client::log(const std::string& line) const {
  if (!cfg_.on_log) return;
  try {
    cfg_.on_log(line);
  } catch (...) {  // a throwing log handler must not take the receive thread (or a request) down
  }
}

void Client::open_request_channel() {
  req_ = transport_.make_request_channel();
  req_->connect(cfg_.control_address);
}

void Client::connect() {
  std::lock_guard<std::mutex> guard(connect_mu_);
  if (running_) return;
  closing_ = false;
  transport_ = cfg_.transport.make_subscriber && cfg_.transport.make_request_channel ? cfg_.transport
                                                                                       : zmq_transport(cfg_.curve);
  {
    std::lock_guard<std::mutex> lock(req_mu_);
    open_request_channel();
  }
  sub_ = transport_.make_subscriber();
  sub_->subscribe(cfg_.character);
  sub_->connect(stream_address_);
  seen_connections_ = 0;
  last_seq_ = -1;
  stop_ = false;
  running_ = true;
  rx_ = std::thread([this] { receive_loop(); });
}

void Client::close() {
  std::lock_guard<std::mutex> guard(connect_mu_);
  closing_ = true;  // a request waiting for its reply gives up within a poll slice and frees req_mu_
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (rx_.joinable()) rx_.join();
  if (sub_) {
    sub_->close();
    sub_.reset();
  }
  std::lock_guard<std::mutex> lock(req_mu_);
  if (req_) {
    req_->close();
    req_.reset();
  }
  running_ = false;
}

void Client::restarted(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.restarts;
  }
  log("the server restarted (" + why + "): playback reset");
  player_.reset();
  newest_stream_ = 0;
  newest_said_ = 0;
  last_seq_ = -1;
}

void Client::receive_loop() {
  while (!stop_) {
    try {
      receive_one();
    } catch (const std::exception& e) {  // nothing may end this thread but close()
      log(std::string("stream handling failed: ") + e.what());
    } catch (...) {
      log("stream handling failed: an unknown exception");
    }
  }
}

void Client::receive_one() {
  std::vector<Bytes>& parts = parts_;
  {
    bool got = false;
    std::int64_t conns = 0;
    try {
      got = sub_->receive(parts, 100);
      conns = sub_->connections();
    } catch (const std::exception& e) {
      log(std::string("stream receive failed: ") + e.what());
      std::unique_lock<std::mutex> lock(wake_mu_);  // back off, but wake at once for close()
      wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_.load(); });
      return;
    }
    if (conns > seen_connections_) {
      // A new connection after the first: the server went away and came back (its clock and ids begin again).
      // Checked before the message: libzmq reports the connection before anything arrives over it.
      if (seen_connections_ > 0) restarted("the stream reconnected");
      seen_connections_ = conns;
    }
    if (!got) return;
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      ++stats_.messages;
    }
    StreamChunk chunk;
    try {
      chunk = decode_chunk(parts);
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(stats_mu_);
        ++stats_.bad_messages;
      }
      log(std::string("stream message rejected: ") + e.what());
      return;
    }
    if (chunk.character != cfg_.character) return;  // a longer id under the same topic prefix
    const std::int64_t newest = newest_stream_.load();
    if (newest > 0 && (chunk.utterance < newest || (chunk.utterance == newest && chunk.seq <= last_seq_))) {
      // Ids went backwards: the server restarted (its clock and utterance ids begin again).
      restarted("utterance " + std::to_string(chunk.utterance) + " seq " + std::to_string(chunk.seq) +
                " after utterance " + std::to_string(newest) + " seq " + std::to_string(last_seq_));
    }
    newest_stream_ = chunk.utterance;
    last_seq_ = chunk.seq;
    if (cfg_.use_player) player_.push(chunk);
    if (cfg_.on_chunk) {
      try {
        cfg_.on_chunk(chunk);
      } catch (const std::exception& e) {
        log(std::string("on_chunk callback threw: ") + e.what());
      } catch (...) {
        log("on_chunk callback threw a non-standard exception");
      }
    }
  }
}

Value Client::roundtrip(const std::string& op, const std::function<Bytes(std::int64_t)>& encode) {
  std::lock_guard<std::mutex> lock(req_mu_);
  if (!req_ || closing_) throw Error("the client is not connected: call connect() first");
  const std::int64_t id = next_id_++;
  req_->send(encode(id));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg_.request_timeout_ms);
  Bytes raw;
  while (true) {
    // Wait in short slices, so close() from another thread ends this wait at once instead of after the timeout.
    if (closing_) throw Error("the client was closed while '" + op + "' waited for its reply");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      std::string why = req_->diagnose();
      // A fresh socket, so a late reply to this request can never be taken for a later one's.
      req_->close();
      open_request_channel();
      {
        std::lock_guard<std::mutex> slock(stats_mu_);
        ++stats_.timeouts;
      }
      std::string msg = "no reply to '" + op + "' from " + cfg_.control_address + " within " +
                        std::to_string(cfg_.request_timeout_ms) + " ms (" +
                        (why.empty() ? "is `mf serve` running there?" : why) + ")";
      log(msg);
      throw TimeoutError(msg);
    }
    if (!req_->receive(raw, static_cast<int>(std::min<long long>(50, std::max<long long>(1, left.count()))))) continue;
    Value reply;
    try {
      reply = decode_reply(raw);
    } catch (const ProtocolError& e) {
      log(std::string("unreadable reply skipped: ") + e.what());
      continue;
    }
    const Value* rid = reply.find("id");
    if (!rid || !rid->is_int() || rid->as_int() != id) continue;  // a late reply to an earlier request
    throw_if_error(reply);
    return reply;
  }
}

Value Client::ping() { return roundtrip("ping", [](std::int64_t id) { return encode_ping(id); }); }

std::int64_t Client::say(const std::string& text, const std::string& voice, int steps) {
  Value r = roundtrip("say", [&](std::int64_t id) { return encode_say(id, cfg_.character, text, voice, steps); });
  std::int64_t u = r.at("utterance").as_int();
  newest_said_ = u;
  return u;
}

std::int64_t Client::drive(const float* pcm, std::size_t count, int sample_rate, int steps) {
  Value r = roundtrip("drive", [&](std::int64_t id) {
    return encode_drive(id, cfg_.character, pcm, count, sample_rate, steps);
  });
  std::int64_t u = r.at("utterance").as_int();
  newest_said_ = u;
  return u;
}

std::optional<std::int64_t> Client::interrupt() {
  const std::int64_t target = newest_utterance();
  if (target > 0) player_.cut(target);  // silence now; the server's end of the utterance follows
  Value r = roundtrip("interrupt", [&](std::int64_t id) { return encode_interrupt(id, cfg_.character); });
  const Value* u = r.find("utterance");
  if (!u || u->is_nil()) return std::nullopt;
  return u->as_int();
}

Value Client::set_character_rgb(const Bytes& rgb, int width, int height, const std::string& voice,
                                const std::string& renderer, int size) {
  return roundtrip("set_character", [&](std::int64_t id) {
    return encode_set_character_rgb(id, cfg_.character, rgb, width, height, voice, renderer, size);
  });
}

Value Client::set_character_image(const Bytes& encoded, const std::string& voice, const std::string& renderer,
                                  int size) {
  return roundtrip("set_character", [&](std::int64_t id) {
    return encode_set_character_image(id, cfg_.character, encoded, voice, renderer, size);
  });
}

Value Client::set_character_seed(std::int64_t face_seed, const std::string& voice) {
  return roundtrip("set_character", [&](std::int64_t id) {
    return encode_set_character_seed(id, cfg_.character, face_seed, voice);
  });
}

int Client::set_steps(int steps, int min_steps) {
  Value r = roundtrip("set_steps", [&](std::int64_t id) { return encode_set_steps(id, cfg_.character, steps, min_steps); });
  return static_cast<int>(r.at("steps").as_int());
}

OutputSettings Client::set_outputs(std::optional<bool> video, std::optional<bool> rig) {
  Value r = roundtrip("set_outputs", [&](std::int64_t id) { return encode_set_outputs(id, cfg_.character, video, rig); });
  OutputSettings out;
  out.video = r.at("video").as_bool();
  out.rig = r.at("rig").as_bool();
  return out;
}

bool Client::set_idle(bool on) {
  Value r = roundtrip("idle", [&](std::int64_t id) { return encode_idle(id, cfg_.character, on); });
  return r.at("idle").as_bool();
}

Value Client::state() {
  return roundtrip("state", [&](std::int64_t id) { return encode_state(id, cfg_.character); });
}

Value Client::stats() {
  return roundtrip("stats", [&](std::int64_t id) { return encode_stats(id, cfg_.character); });
}

Value Client::request(const std::string& op, const Value& fields) {
  if (!fields.is_map()) throw std::invalid_argument("request fields must be a map, got " + fields.to_string());
  return roundtrip(op, [&](std::int64_t id) {
    Value r = Value::map({{"v", kProtocolVersion}, {"op", op}, {"id", static_cast<long long>(id)}});
    for (std::size_t i = 0; i < fields.size(); ++i) r.set(fields.keys()[i], fields[i]);
    return pack_value(r);
  });
}

ClientStats Client::client_stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

std::int64_t Client::newest_utterance() const { return std::max(newest_stream_.load(), newest_said_.load()); }

}  // namespace mfruntime
