// mfruntime::Client over a fake transport (no server): reply matching by id, timeouts re-creating the control
// channel, bad stream messages counted, a server restart detected on the stream, interrupt cutting locally.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <thread>

#include "check.hpp"
#include "mfruntime/client.hpp"

using mfruntime::Bytes;
using mfruntime::Value;

namespace {

struct Wire {  // what the fake server sees and sends
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<Bytes>> stream;  // messages for the subscriber
  std::deque<Bytes> replies;              // replies for the current request channel
  std::vector<Value> requests;
  int channels = 0;
  bool answer = true;       // reply to requests
  bool stale_first = true;  // send a reply with another id first

  void publish(std::vector<Bytes> parts) {
    std::lock_guard<std::mutex> lock(mu);
    stream.push_back(std::move(parts));
    cv.notify_all();
  }
};

class FakeSub : public mfruntime::Subscriber {
 public:
  explicit FakeSub(Wire& w) : w_(w) {}
  void connect(const std::string&) override {}
  void subscribe(const std::string&) override {}
  bool receive(std::vector<Bytes>& parts, int timeout_ms) override {
    std::unique_lock<std::mutex> lock(w_.mu);
    if (!w_.cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !w_.stream.empty(); })) return false;
    parts = std::move(w_.stream.front());
    w_.stream.pop_front();
    return true;
  }
  void close() override {}

 private:
  Wire& w_;
};

class FakeReq : public mfruntime::RequestChannel {
 public:
  explicit FakeReq(Wire& w) : w_(w) {}
  void connect(const std::string&) override {}
  void send(const Bytes& request) override {
    Value r = mfruntime::decode_request(request);
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.requests.push_back(r);
    if (!w_.answer) return;
    const std::string op = r.at("op").as_string();
    if (w_.stale_first)
      pending_.push_back(mfruntime::pack_value(Value::map({{"v", 1}, {"id", 999}, {"status", "ok"}, {"utterance", 77}})));
    Value reply = Value::map({{"v", 1}, {"id", r.at("id")}, {"status", "ok"}});
    if (op == "say") reply.set("utterance", 4);
    if (op == "interrupt") reply.set("utterance", 4);
    if (op == "state") {
      reply = Value::map({{"v", 1}, {"id", r.at("id")}, {"status", "error"}, {"error", "no character 'x'"}});
    }
    pending_.push_back(mfruntime::pack_value(reply));
  }
  bool receive(Bytes& reply, int timeout_ms) override {
    if (pending_.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
      return false;
    }
    reply = pending_.front();
    pending_.pop_front();
    return true;
  }
  void close() override {}

 private:
  Wire& w_;
  std::deque<Bytes> pending_;
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
  Wire wire;
  std::vector<std::string> logs;
  std::mutex log_mu;
  std::atomic<int> chunks{0};
  std::unique_ptr<mfruntime::Client> client;

  explicit Fixture(int timeout_ms = 200) {
    mfruntime::ClientConfig cfg;
    cfg.control_address = "tcp://127.0.0.1:7000";
    cfg.request_timeout_ms = timeout_ms;
    cfg.transport.make_subscriber = [this] { return std::make_unique<FakeSub>(wire); };
    cfg.transport.make_request_channel = [this] {
      std::lock_guard<std::mutex> lock(wire.mu);
      ++wire.channels;
      return std::make_unique<FakeReq>(wire);
    };
    cfg.on_chunk = [this](const mfruntime::StreamChunk&) { ++chunks; };
    cfg.on_log = [this](const std::string& l) {
      std::lock_guard<std::mutex> lock(log_mu);
      logs.push_back(l);
    };
    client = std::make_unique<mfruntime::Client>(cfg);
    client->connect();
  }
  void wait_chunks(int n) {
    for (int i = 0; i < 200 && chunks < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
};

}  // namespace

TEST(stream_address_defaults_to_the_next_port) {
  CHECK_EQ(mfruntime::default_stream_address("tcp://127.0.0.1:5555"), std::string("tcp://127.0.0.1:5556"));
  CHECK_EQ(mfruntime::default_stream_address("tcp://[::1]:6000"), std::string("tcp://[::1]:6001"));
  CHECK_THROWS(mfruntime::default_stream_address("ipc:///tmp/mf"), std::invalid_argument, "stream_address");
}

TEST(replies_are_matched_by_id_and_stale_ones_skipped) {
  Fixture f;
  CHECK_EQ(f.client->say("Hi."), 4);  // the stale reply (id 999, utterance 77) came first
  CHECK_EQ(f.wire.requests.size(), 1u);
  CHECK_EQ(f.wire.requests[0].at("op").as_string(), std::string("say"));
  CHECK_EQ(f.wire.requests[0].at("character").as_string(), std::string("default"));
  CHECK_THROWS(f.client->state(), mfruntime::ServerError, "no character 'x'");
  CHECK_EQ(f.client->ping().at("status").as_string(), std::string("ok"));
  CHECK(f.wire.requests[1].at("id").as_int() != f.wire.requests[0].at("id").as_int());
}

TEST(a_timeout_throws_and_recreates_the_control_channel) {
  Fixture f(100);
  f.wire.answer = false;
  CHECK_THROWS(f.client->ping(), mfruntime::TimeoutError, "no reply to 'ping' from tcp://127.0.0.1:7000 within 100 ms");
  CHECK_EQ(f.wire.channels, 2);  // a fresh channel: a late reply cannot be taken for the next request's
  CHECK_EQ(f.client->client_stats().timeouts, 1);
  f.wire.answer = true;
  CHECK_EQ(f.client->ping().at("status").as_string(), std::string("ok"));
}

TEST(bad_stream_messages_are_counted_and_logged_not_fatal) {
  Fixture f;
  std::vector<Bytes> bad = mfruntime::encode_chunk(chunk(1, 0, 0));
  bad[2].pop_back();
  f.wire.publish(bad);
  f.wire.publish({Bytes{'x'}});
  f.wire.publish(mfruntime::encode_chunk(chunk(1, 0, 0)));
  f.wait_chunks(1);
  CHECK_EQ(f.chunks.load(), 1);
  CHECK_EQ(f.client->client_stats().bad_messages, 2);
  CHECK_EQ(f.client->client_stats().messages, 3);
  std::lock_guard<std::mutex> lock(f.log_mu);
  CHECK(f.logs.size() == 2 && f.logs[0].find("video part") != std::string::npos);
}

TEST(a_server_restart_on_the_stream_resets_the_player) {
  Fixture f;
  mfruntime::StreamChunk other = chunk(1, 0, 0);
  other.character = "default2";  // same topic prefix, another character: not ours
  f.wire.publish(mfruntime::encode_chunk(other));
  f.wire.publish(mfruntime::encode_chunk(chunk(5, 0, 80000)));
  f.wire.publish(mfruntime::encode_chunk(chunk(5, 1, 82560)));
  f.wait_chunks(2);
  CHECK_EQ(f.client->player().newest_utterance(), 5);
  f.wire.publish(mfruntime::encode_chunk(chunk(1, 0, 0)));  // ids and clock start again
  f.wait_chunks(3);
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

TEST(interrupt_cuts_the_newest_utterance_locally_at_once) {
  Fixture f;
  f.wire.publish(mfruntime::encode_chunk(chunk(3, 0, 0)));
  f.wait_chunks(1);
  CHECK_EQ(f.client->say("Next."), 4);  // no chunk of 4 yet
  std::optional<std::int64_t> cut = f.client->interrupt();
  CHECK(cut && *cut == 4);
  std::vector<std::int64_t> ended;
  while (auto e = f.client->player().poll_event())
    if (e->type == mfruntime::PlayerEvent::Type::UtteranceEnded && e->interrupted) ended.push_back(e->utterance);
  CHECK(ended == std::vector<std::int64_t>({3, 4}));
  f.wire.publish(mfruntime::encode_chunk(chunk(4, 0, 2560)));  // arrives after the cut: ignored
  f.wait_chunks(2);
  CHECK_EQ(f.client->player().stats().ignored, 1);
  std::vector<float> out(960);
  CHECK_EQ(f.client->player().read_audio(out.data(), 480, 2), 0);
}

int main(int argc, char** argv) { return check::run_all(argc > 1 ? argv[1] : nullptr); }
