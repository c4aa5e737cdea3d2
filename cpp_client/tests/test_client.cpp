// mfruntime::Client through its default ZeroMQ transport against a scripted peer in this process, made of real libzmq
// sockets bound on 127.0.0.1 (free ports): a ROUTER answering control requests from a thread, and an XPUB (a PUB
// that also tells the test when the client's subscription has arrived, so nothing is published into the void).
// Checked: replies matched by id with a stale one skipped, a timeout re-creating the control channel, malformed
// stream messages counted and logged, a character sharing the topic prefix ignored, a server restart detected by
// ids going backwards and by the stream reconnecting (player reset), interrupt cutting locally.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <zmq.hpp>

#include "check.hpp"
#include "mfruntime/client.hpp"

using mfruntime::Bytes;
using mfruntime::Value;
using Clock = std::chrono::steady_clock;

namespace {

Bytes to_bytes(const zmq::message_t& m) {
  const auto* p = static_cast<const std::uint8_t*>(m.data());
  return Bytes(p, p + m.size());
}

// Waits up to `ms` for pred() to hold.
template <class Pred>
bool wait_until(Pred pred, int ms = 2000) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

/// The scripted server. The ROUTER belongs to the peer's thread, the XPUB to the test's thread.
class Peer {
 public:
  struct Request {
    std::string identity;  // the DEALER connection it came from
    Value body;
  };

  std::atomic<bool> answer{true};       // reply to requests (false: swallow them)
  std::atomic<bool> stale_first{true};  // send a reply with another id before the real one

  Peer() : router_(ctx_, zmq::socket_type::router), pub_(ctx_, zmq::socket_type::xpub) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    control = router_.get(zmq::sockopt::last_endpoint);
    pub_.set(zmq::sockopt::linger, 0);
    pub_.bind("tcp://127.0.0.1:*");
    stream = pub_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~Peer() {
    stop_ = true;
    thread_.join();
  }

  std::string control, stream;

  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  /// Waits until a subscription to `topic` reaches the XPUB: from then on every message published reaches it.
  bool wait_subscribed(const std::string& topic, int ms = 3000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < deadline) {
      zmq::pollitem_t item{pub_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) == 0) continue;
      zmq::message_t m;
      if (!pub_.recv(m, zmq::recv_flags::none)) continue;
      const std::string s(static_cast<const char*>(m.data()), m.size());
      if (s == std::string(1, '\x01') + topic) return true;
    }
    return false;
  }

  void publish(const std::vector<Bytes>& parts) {
    for (std::size_t i = 0; i < parts.size(); ++i)
      pub_.send(zmq::message_t(parts[i].data(), parts[i].size()),
                i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }

  /// The stream side of a server restart: the publisher goes away and a new one binds the same address.
  void restart_stream() {
    pub_.close();
    pub_ = zmq::socket_t(ctx_, zmq::socket_type::xpub);
    pub_.set(zmq::sockopt::linger, 0);
    for (int i = 0;; ++i) {  // libzmq closes the old listener in its I/O thread: the port frees a moment later
      try {
        pub_.bind(stream);
        return;
      } catch (const zmq::error_t& e) {
        if (e.num() != EADDRINUSE || i >= 200) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }

 private:
  void serve() {
    while (!stop_) {
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) == 0) continue;
      std::vector<zmq::message_t> frames;
      do {
        frames.emplace_back();
        if (!router_.recv(frames.back(), zmq::recv_flags::none)) break;
      } while (frames.back().more());
      if (frames.size() != 2) continue;  // the client's DEALER sends one frame; the ROUTER adds the identity
      Request r{frames[0].to_string(), mfruntime::decode_request(to_bytes(frames[1]))};
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(r);
      }
      if (!answer) continue;
      if (stale_first) reply(r.identity, Value::map({{"v", 3}, {"id", 999}, {"status", "ok"}, {"utterance", 77}}));
      reply(r.identity, answer_to(r.body));
    }
  }

  static Value answer_to(const Value& req) {
    const std::string op = req.at("op").as_string();
    Value reply = Value::map({{"v", 3}, {"id", req.at("id")}, {"status", "ok"}});
    if (op == "ping") reply.set("protocol", 3);
    if (op == "say" || op == "interrupt") reply.set("utterance", 4);
    if (op == "set_outputs") {  // as the server: what was asked, video on and rig on where left out
      reply.set("video", req.find("video") ? req.at("video").as_bool() : true);
      reply.set("rig", req.find("rig") ? req.at("rig").as_bool() : true);
    }
    if (op == "state") reply = Value::map({{"v", 3}, {"id", req.at("id")}, {"status", "error"}, {"error", "no character 'x'"}});
    return reply;
  }

  void reply(const std::string& identity, const Value& body) {
    const Bytes raw = mfruntime::pack_value(body);
    router_.send(zmq::buffer(identity), zmq::send_flags::sndmore);
    router_.send(zmq::message_t(raw.data(), raw.size()), zmq::send_flags::none);
  }

  zmq::context_t ctx_;
  zmq::socket_t router_, pub_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Request> requests_;
};

mfruntime::StreamChunk chunk(std::int64_t utt, std::int64_t seq, std::int64_t clock) {
  mfruntime::StreamChunk c;
  c.character = "default";
  c.utterance = utt;
  c.seq = seq;
  c.pts = clock / 16000.0;
  c.clock = clock;
  c.width = c.height = 2;
  c.frames = 4;
  c.fps = 25;
  c.sample_rate = 16000;
  c.samples = 2560;
  c.video.assign(4 * 12, 1);
  c.pcm.assign(2560, 0.25f);
  return c;
}

struct Fixture {
  Peer peer;  // declared first: it outlives the client
  std::vector<std::string> logs;
  std::mutex log_mu;
  std::atomic<int> chunks{0};
  std::unique_ptr<mfruntime::Client> client;

  explicit Fixture(int timeout_ms = 2000) {
    mfruntime::ClientConfig cfg;  // cfg.transport left empty: the ZeroMQ transport
    cfg.control_address = peer.control;
    cfg.stream_address = peer.stream;
    cfg.request_timeout_ms = timeout_ms;
    cfg.on_chunk = [this](const mfruntime::StreamChunk&) { ++chunks; };
    cfg.on_log = [this](const std::string& l) {
      std::lock_guard<std::mutex> lock(log_mu);
      logs.push_back(l);
    };
    client = std::make_unique<mfruntime::Client>(cfg);
    client->connect();
  }
  ~Fixture() { client.reset(); }

  void subscribed() { CHECK(peer.wait_subscribed("default")); }
  bool wait_chunks(int n) { return wait_until([&] { return chunks >= n; }); }
  std::vector<std::string> log_lines() {
    std::lock_guard<std::mutex> lock(log_mu);
    return logs;
  }
};

}  // namespace

TEST(stream_address_defaults_to_the_next_port) {
  CHECK_EQ(mfruntime::default_stream_address("tcp://127.0.0.1:5555"), std::string("tcp://127.0.0.1:5556"));
  CHECK_EQ(mfruntime::default_stream_address("tcp://[::1]:6000"), std::string("tcp://[::1]:6001"));
  CHECK_THROWS(mfruntime::default_stream_address("ipc:///tmp/mf"), std::invalid_argument, "stream_address");
  mfruntime::ClientConfig bare;
  bare.control_address = "127.0.0.1:5555";  // no tcp://
  CHECK_THROWS(mfruntime::Client{bare}, std::invalid_argument, "must look like tcp://127.0.0.1:5555");
}

TEST(replies_are_matched_by_id_and_stale_ones_skipped) {
  Fixture f;
  CHECK(f.peer.control.rfind("tcp://127.0.0.1:", 0) == 0 && f.peer.stream != f.peer.control);
  CHECK_EQ(f.client->say("Hi."), 4);  // the stale reply (id 999, utterance 77) came first
  auto reqs = f.peer.requests();
  CHECK_EQ(reqs.size(), 1u);
  if (reqs.size() != 1) return;
  CHECK_EQ(reqs[0].body.at("op").as_string(), std::string("say"));
  CHECK_EQ(reqs[0].body.at("character").as_string(), std::string("default"));
  CHECK_EQ(reqs[0].body.at("text").as_string(), std::string("Hi."));
  CHECK_THROWS(f.client->state(), mfruntime::ServerError, "no character 'x'");
  CHECK_EQ(f.client->ping().at("protocol").as_int(), 3);
  mfruntime::OutputSettings rig_only = f.client->set_outputs(false);
  CHECK(!rig_only.video && rig_only.rig);
  mfruntime::OutputSettings no_rig = f.client->set_outputs(std::nullopt, false);
  CHECK(no_rig.video && !no_rig.rig);
  reqs = f.peer.requests();
  CHECK_EQ(reqs.size(), 5u);
  if (reqs.size() != 5) return;
  CHECK(reqs[1].body.at("id").as_int() != reqs[0].body.at("id").as_int());
  CHECK(reqs[2].body.at("id").as_int() != reqs[1].body.at("id").as_int());
  CHECK(reqs[0].identity == reqs[2].identity);  // one control connection throughout
  // set_outputs sends only what was given (a setting left out stays as it is on the server).
  CHECK_EQ(reqs[3].body.at("op").as_string(), std::string("set_outputs"));
  CHECK_EQ(reqs[3].body.at("character").as_string(), std::string("default"));
  CHECK(!reqs[3].body.at("video").as_bool() && !reqs[3].body.find("rig"));
  CHECK(!reqs[4].body.find("video") && !reqs[4].body.at("rig").as_bool());
  CHECK_EQ(f.client->client_stats().timeouts, 0);
}

TEST(a_timeout_throws_and_recreates_the_control_channel) {
  Fixture f(300);
  CHECK_EQ(f.client->ping().at("status").as_string(), std::string("ok"));  // connected
  f.peer.answer = false;
  CHECK_THROWS(f.client->ping(), mfruntime::TimeoutError,
               "no reply to 'ping' from " + f.peer.control + " within 300 ms (connected, but the server did not answer in time");
  CHECK_EQ(f.client->client_stats().timeouts, 1);
  f.peer.answer = true;
  CHECK_EQ(f.client->ping().at("status").as_string(), std::string("ok"));
  auto reqs = f.peer.requests();
  CHECK_EQ(reqs.size(), 3u);  // the unanswered ping did reach the peer
  if (reqs.size() != 3) return;
  CHECK(reqs[0].identity == reqs[1].identity);
  CHECK(reqs[1].identity != reqs[2].identity);  // a fresh channel: a late reply cannot be taken for the next one's
  auto logs = f.log_lines();
  CHECK(logs.size() == 1 && logs[0].find("no reply to 'ping'") != std::string::npos);
}

TEST(bad_stream_messages_are_counted_and_logged_not_fatal) {
  Fixture f;
  f.subscribed();
  std::vector<Bytes> bad = mfruntime::encode_chunk(chunk(1, 0, 0));
  bad[2].pop_back();  // a video part one byte short
  f.peer.publish(bad);
  f.peer.publish({Bytes{'d', 'e', 'f', 'a', 'u', 'l', 't'}});  // one part (the topic alone)
  std::vector<Bytes> four = mfruntime::encode_chunk(chunk(1, 0, 0));
  four.pop_back();  // no rig part: the shape of protocol version 1
  f.peer.publish(four);
  f.peer.publish(mfruntime::encode_chunk(chunk(1, 0, 0)));
  CHECK(f.wait_chunks(1));
  CHECK_EQ(f.chunks.load(), 1);
  CHECK_EQ(f.client->client_stats().bad_messages, 3);
  CHECK_EQ(f.client->client_stats().messages, 4);
  CHECK_EQ(f.client->player().newest_utterance(), 1);
  auto logs = f.log_lines();
  CHECK_EQ(logs.size(), 3u);
  CHECK(logs.size() == 3 && logs[0].find("video part") != std::string::npos &&
        logs[1].find("stream message rejected") != std::string::npos &&
        logs[2].find("got 4 (a protocol version 1 server sends 4: update mf serve)") != std::string::npos);
}

TEST(a_server_restart_on_the_stream_resets_the_player) {
  Fixture f;
  f.subscribed();
  mfruntime::StreamChunk other = chunk(1, 0, 0);
  other.character = "default2";  // same topic prefix, another character: not ours
  f.peer.publish(mfruntime::encode_chunk(other));
  f.peer.publish(mfruntime::encode_chunk(chunk(5, 0, 80000)));
  f.peer.publish(mfruntime::encode_chunk(chunk(5, 1, 82560)));
  CHECK(f.wait_chunks(2));
  CHECK_EQ(f.client->client_stats().messages, 3);  // default2's arrived (prefix match) and was skipped
  CHECK_EQ(f.client->client_stats().restarts, 0);
  CHECK_EQ(f.client->player().newest_utterance(), 5);
  f.peer.publish(mfruntime::encode_chunk(chunk(1, 0, 0)));  // ids and clock start again
  CHECK(f.wait_chunks(3));
  CHECK_EQ(f.client->client_stats().restarts, 1);
  CHECK_EQ(f.client->player().newest_utterance(), 1);
  CHECK_EQ(f.client->newest_utterance(), 1);
  bool ended5 = false;
  while (auto e = f.client->player().poll_event())
    ended5 = ended5 || (e->type == mfruntime::PlayerEvent::Type::UtteranceEnded && e->utterance == 5 && e->interrupted);
  CHECK(ended5);
  std::vector<float> out(960);
  CHECK_EQ(f.client->player().read_audio(out.data(), 480, 2), 480);  // utterance 1 of the new server plays
  CHECK_EQ(f.client->player().audio_clock(), 160);
}

TEST(a_reconnect_of_the_stream_is_a_restart_too) {
  Fixture f;
  f.subscribed();
  f.peer.publish(mfruntime::encode_chunk(chunk(5, 0, 80000)));
  CHECK(f.wait_chunks(1));
  CHECK_EQ(f.client->player().newest_utterance(), 5);
  f.peer.restart_stream();  // a new publisher on the same port; the client's SUB reconnects by itself
  CHECK(f.peer.wait_subscribed("default"));
  CHECK(wait_until([&] { return f.client->client_stats().restarts == 1; }));
  CHECK_EQ(f.client->player().newest_utterance(), 0);  // reset before anything of the new server arrived
  CHECK_EQ(f.client->newest_utterance(), 0);
  bool ended5 = false;
  while (auto e = f.client->player().poll_event())
    ended5 = ended5 || (e->type == mfruntime::PlayerEvent::Type::UtteranceEnded && e->utterance == 5 && e->interrupted);
  CHECK(ended5);
  bool logged = false;
  for (const std::string& l : f.log_lines()) logged = logged || l.find("the stream reconnected") != std::string::npos;
  CHECK(logged);
  f.peer.publish(mfruntime::encode_chunk(chunk(1, 0, 0)));  // the new server's first utterance
  CHECK(f.wait_chunks(2));
  CHECK_EQ(f.client->client_stats().restarts, 1);  // counted once, not again for the ids starting over
  CHECK_EQ(f.client->player().newest_utterance(), 1);
  std::vector<float> out(960);
  CHECK_EQ(f.client->player().read_audio(out.data(), 480, 2), 480);
}

TEST(interrupt_cuts_the_newest_utterance_locally_at_once) {
  Fixture f;
  f.subscribed();
  f.peer.publish(mfruntime::encode_chunk(chunk(3, 0, 0)));
  CHECK(f.wait_chunks(1));
  CHECK_EQ(f.client->say("Next."), 4);  // no chunk of 4 yet
  std::optional<std::int64_t> cut = f.client->interrupt();
  CHECK(cut && *cut == 4);
  auto reqs = f.peer.requests();
  CHECK(reqs.size() == 2 && reqs[1].body.at("op").as_string() == "interrupt");
  std::vector<std::int64_t> ended;
  while (auto e = f.client->player().poll_event())
    if (e->type == mfruntime::PlayerEvent::Type::UtteranceEnded && e->interrupted) ended.push_back(e->utterance);
  CHECK(ended == std::vector<std::int64_t>({3, 4}));
  f.peer.publish(mfruntime::encode_chunk(chunk(4, 0, 2560)));  // arrives after the cut: ignored
  CHECK(f.wait_chunks(2));
  CHECK_EQ(f.client->player().stats().ignored, 1);
  std::vector<float> out(960);
  CHECK_EQ(f.client->player().read_audio(out.data(), 480, 2), 0);
}

TEST(close_does_not_wait_for_a_request_in_flight) {
  Peer peer;
  peer.answer = false;  // the request never gets its reply
  mfruntime::ClientConfig cfg;
  cfg.control_address = peer.control;
  cfg.stream_address = peer.stream;
  cfg.request_timeout_ms = 10000;
  mfruntime::Client client(cfg);
  client.connect();
  std::atomic<bool> threw_closed{false}, returned{false};
  std::thread asker([&] {
    try {
      client.ping();
    } catch (const mfruntime::Error& e) {
      threw_closed = std::string(e.what()).find("closed") != std::string::npos;
    }
    returned = true;
  });
  CHECK(wait_until([&] { return peer.requests().size() == 1; }));
  const auto t0 = Clock::now();
  client.close();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  asker.join();
  CHECK(took < 1000);  // not the request's 10 s
  CHECK(returned && threw_closed);
  CHECK_THROWS(client.ping(), mfruntime::Error, "not connected");
  // Destroying a connected client is prompt too.
  auto other = std::make_unique<mfruntime::Client>(cfg);
  other->connect();
  const auto t1 = Clock::now();
  other.reset();
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t1).count() < 1000);
}

TEST(handler_exceptions_do_not_stop_the_receive_thread) {
  Peer peer;
  std::atomic<int> seen{0}, logged{0};
  mfruntime::ClientConfig cfg;
  cfg.control_address = peer.control;
  cfg.stream_address = peer.stream;
  cfg.on_chunk = [&](const mfruntime::StreamChunk& c) {
    ++seen;
    if (c.seq == 0) throw std::runtime_error("a handler bug");
    if (c.seq == 1) throw 42;  // not even a std::exception
  };
  cfg.on_log = [&](const std::string&) {
    ++logged;
    throw std::runtime_error("a log handler bug");
  };
  mfruntime::Client client(cfg);
  client.connect();
  CHECK(peer.wait_subscribed("default"));
  peer.publish(mfruntime::encode_chunk(chunk(1, 0, 0)));
  peer.publish(mfruntime::encode_chunk(chunk(1, 1, 2560)));
  peer.publish({Bytes{'d', 'e', 'f', 'a', 'u', 'l', 't'}});  // a malformed message: logged (and the log throws)
  peer.publish(mfruntime::encode_chunk(chunk(1, 2, 5120)));
  CHECK(wait_until([&] { return seen == 3; }));
  CHECK_EQ(client.client_stats().bad_messages, 1);
  CHECK(logged >= 3);  // on_chunk's two throws and the bad message, each logged once
  CHECK_EQ(client.player().stats().chunks, 3);
  CHECK_EQ(client.ping().at("status").as_string(), std::string("ok"));  // the client still works
}

TEST(connect_is_thread_safe) {
  Peer peer;
  mfruntime::ClientConfig cfg;
  cfg.control_address = peer.control;
  cfg.stream_address = peer.stream;
  for (int round = 0; round < 5; ++round) {
    mfruntime::Client client(cfg);
    // Requests before connect(): each thread gets a clear error, nothing is half opened.
    std::atomic<int> not_connected{0};
    {
      std::vector<std::thread> early;
      for (int i = 0; i < 2; ++i)
        early.emplace_back([&] {
          try {
            client.ping();
          } catch (const mfruntime::Error& e) {
            if (std::string(e.what()).find("not connected") != std::string::npos) ++not_connected;
          }
        });
      for (auto& t : early) t.join();
    }
    CHECK_EQ(not_connected.load(), 2);
    // Several threads connect at once, then request: one connection, every request answered.
    std::atomic<int> answered{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 6; ++i)
      threads.emplace_back([&] {
        client.connect();
        if (client.ping().at("status").as_string() == "ok") ++answered;
      });
    for (auto& t : threads) t.join();
    CHECK_EQ(answered.load(), 6);
    CHECK(client.connected());
  }
}

TEST(use_player_false_leaves_the_player_empty) {
  Peer peer;
  std::atomic<int> seen{0};
  mfruntime::ClientConfig cfg;
  cfg.control_address = peer.control;
  cfg.stream_address = peer.stream;
  cfg.use_player = false;  // an on_chunk-only consumer
  cfg.on_chunk = [&](const mfruntime::StreamChunk&) { ++seen; };
  mfruntime::Client client(cfg);
  client.connect();
  CHECK(peer.wait_subscribed("default"));
  for (int s = 0; s < 5; ++s) peer.publish(mfruntime::encode_chunk(chunk(1, s, 2560LL * s)));
  CHECK(wait_until([&] { return seen == 5; }));
  CHECK_EQ(client.player().stats().chunks, 0);
  CHECK_EQ(client.player().buffered_ms(), 0.0);
  CHECK_EQ(client.newest_utterance(), 1);  // the client still follows the stream's ids
}

int main(int argc, char** argv) { return check::run_all(argc > 1 ? argv[1] : nullptr); }
