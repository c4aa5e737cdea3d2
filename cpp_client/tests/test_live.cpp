// Against a running `mf serve`: requests, a whole utterance through the client and its player (video and rig
// frames), an interrupted rig-only one, errors, and a server restart. tests/test_bridge_cpp.py starts the server and runs
//
//   test_live CONTROL_ADDRESS STREAM_ADDRESS [FILTER]
//
// The last test asks its driver to restart the server on the same ports: it prints a line `RESTART-SERVER` and
// waits for a line `restarted` on stdin (the driver writes it once the new server answers).
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "check.hpp"
#include "mfruntime/mfruntime.hpp"

using Clock = std::chrono::steady_clock;
using mfruntime::PlayerEvent;
using mfruntime::StreamChunk;

namespace {

std::string g_control, g_stream;

struct Received {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<StreamChunk, Clock::time_point>> chunks;

  // Waits until pred(chunks) holds or `seconds` pass.
  template <class Pred>
  bool wait(Pred pred, double seconds) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return pred(chunks); });
  }
  std::vector<std::pair<StreamChunk, Clock::time_point>> of(std::int64_t utt) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::pair<StreamChunk, Clock::time_point>> out;
    for (auto& c : chunks)
      if (c.first.utterance == utt) out.push_back(c);
    return out;
  }
};

Received g_rx;
std::unique_ptr<mfruntime::Client> g_client;

bool has_eou(const std::vector<std::pair<StreamChunk, Clock::time_point>>& all, std::int64_t utt) {
  for (auto& c : all)
    if (c.first.utterance == utt && c.first.eou) return true;
  return false;
}

bool has_any(const std::vector<std::pair<StreamChunk, Clock::time_point>>& all, std::int64_t utt) {
  for (auto& c : all)
    if (c.first.utterance == utt) return true;
  return false;
}

// A connected client whose chunks go to `rx`.
std::unique_ptr<mfruntime::Client> make_client(Received& rx) {
  mfruntime::ClientConfig cfg;
  cfg.control_address = g_control;
  cfg.stream_address = g_stream;
  cfg.output_rate = 48000;
  cfg.request_timeout_ms = 30000;  // the first say warms the model up
  cfg.on_chunk = [&rx](const StreamChunk& c) {
    std::lock_guard<std::mutex> lock(rx.mu);
    rx.chunks.emplace_back(c, Clock::now());
    rx.cv.notify_all();
  };
  cfg.on_log = [](const std::string& line) { std::printf("    client: %s\n", line.c_str()); };
  auto c = std::make_unique<mfruntime::Client>(cfg);
  c->connect();
  return c;
}

mfruntime::Client& client() {
  if (!g_client) g_client = make_client(g_rx);
  return *g_client;
}

}  // namespace

TEST(ping_reports_the_protocol_and_the_default_character) {
  mfruntime::Value r = client().ping();
  CHECK_EQ(r.at("status").as_string(), std::string("ok"));
  CHECK_EQ(r.at("protocol").as_int(), 3);
  CHECK_EQ(r.at("rig").at("version").as_int(), mfruntime::kRigVersion);
  CHECK(mfruntime::rig_controls_from_ping(r) == mfruntime::rig_controls());  // the names this client knows
  bool found = false;
  for (std::size_t i = 0; i < r.at("characters").size(); ++i) found = found || r.at("characters")[i].as_string() == "default";
  CHECK(found);
  CHECK(r.at("server").as_string().find("mfruntime") != std::string::npos);
  CHECK_EQ(client().stream_address(), g_stream);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the SUB subscription reaches the server
}

TEST(say_streams_every_chunk_and_the_player_plays_it_in_order) {
  mfruntime::Client& c = client();
  mfruntime::Player& player = c.player();
  while (player.poll_event()) {
  }
  const auto t0 = Clock::now();
  const std::int64_t utt = c.say("Hello from C plus plus.");
  CHECK(utt >= 1);

  // Play it as an engine would: the audio callback pulls 10 ms blocks, the game thread takes frames, about twice
  // as fast as real time (underruns are allowed; order and exactness are checked).
  std::vector<float> block(480 * 2);
  long long audible = 0;
  std::int64_t last_frame_clock = -1;
  int frames_taken = 0;
  bool in_order = true, on_time = true, started = false, ended = false, ended_interrupted = true;
  std::vector<std::pair<std::int64_t, std::vector<float>>> rig_shown;  // (clock, rig) of each frame taken
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!ended && Clock::now() < deadline) {
    audible += player.read_audio(block.data(), 480, 2);
    if (auto f = player.take_frame()) {
      in_order = in_order && f->clock > last_frame_clock && f->utterance == utt;
      on_time = on_time && f->clock <= player.audio_clock();
      last_frame_clock = f->clock;
      rig_shown.emplace_back(f->clock, f->rig);
      ++frames_taken;
    }
    while (auto e = player.poll_event()) {
      if (e->utterance != utt) continue;
      if (e->type == PlayerEvent::Type::UtteranceStarted) started = true;
      if (e->type == PlayerEvent::Type::UtteranceEnded) {
        ended = true;
        ended_interrupted = e->interrupted;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  while (auto f = player.take_frame()) {  // the last frames are due once the utterance is over
    in_order = in_order && f->clock > last_frame_clock;
    last_frame_clock = f->clock;
    rig_shown.emplace_back(f->clock, f->rig);
    ++frames_taken;
  }
  CHECK(started);
  CHECK(ended);
  CHECK(!ended_interrupted);

  auto chunks = g_rx.of(utt);
  CHECK(!chunks.empty());
  if (chunks.empty()) return;
  const double first_ms = std::chrono::duration<double, std::milli>(chunks.front().second - t0).count();
  std::printf("    say -> first chunk: %.1f ms (%zu chunks, %.2f s of audio)\n", first_ms, chunks.size(),
              chunks.size() * 0.16);
  std::int64_t media = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const StreamChunk& k = chunks[i].first;
    CHECK_EQ(k.seq, static_cast<std::int64_t>(i));  // continuous from 0, nothing lost
    CHECK_EQ(k.utterance, utt);
    CHECK_EQ(k.eou, i + 1 == chunks.size());
    if (i > 0) CHECK_EQ(k.clock, chunks[i - 1].first.clock + chunks[i - 1].first.samples);
    if (k.is_end_marker()) continue;
    ++media;
    CHECK_EQ(k.frames, 4);
    CHECK_EQ(k.samples, 2560);
    CHECK_EQ(k.fps, 25);
    CHECK_EQ(k.sample_rate, 16000);
    CHECK(k.width > 0 && k.width == k.height);
    CHECK_EQ(k.video.size(), static_cast<std::size_t>(4) * k.height * k.width * 3);
    CHECK_EQ(k.pcm.size(), 2560u);
    // The rig (the bundled model has a rig head): per frame, 8 blendshape weights in 0–1, the head pose, and 15
    // viseme weights summing to 1.
    CHECK(k.has_video);
    CHECK_EQ(k.rig_version, mfruntime::kRigVersion);
    CHECK(k.steps >= 1 && k.steps <= 50);  // the steps it was made with
    CHECK_EQ(k.controls, static_cast<int>(mfruntime::rig_controls().size()));
    CHECK_EQ(k.rig.size(), static_cast<std::size_t>(k.frames) * static_cast<std::size_t>(k.controls));
    for (int f = 0; f < k.frames && k.has_rig(); ++f) {
      const float* row = k.rig_frame(f);
      for (int b = 0; b < 8; ++b) CHECK(row[b] >= 0.0f && row[b] <= 1.0f);
      double visemes = 0.0;
      for (int v = 13; v < 28; ++v) visemes += row[v];
      CHECK_NEAR(visemes, 1.0, 1e-3);
    }
  }
  // Each frame the player gave carried the rig row of its own frame (same chunk, same index).
  bool rig_matches = !rig_shown.empty();
  for (const auto& shown : rig_shown) {
    bool found = false;
    for (const auto& ch : chunks) {
      const StreamChunk& k = ch.first;
      if (k.is_end_marker() || shown.first < k.clock || shown.first >= k.clock + k.samples) continue;
      const int i = static_cast<int>((shown.first - k.clock) / 640);
      found = shown.second == std::vector<float>(k.rig_frame(i), k.rig_frame(i) + k.controls);
    }
    rig_matches = rig_matches && found;
  }
  CHECK(rig_matches);
  CHECK(!chunks.back().first.interrupted);
  if (chunks.back().first.is_end_marker()) CHECK(!chunks.back().first.has_rig() && chunks.back().first.rig.empty());
  const StreamChunk& last = chunks.back().first;
  CHECK(in_order);
  CHECK(on_time);
  CHECK_EQ(frames_taken + player.stats().dropped_frames, media * 4);
  CHECK_EQ(audible, media * 2560 * 3);  // every sample, resampled to 48 kHz exactly
  CHECK_EQ(player.audio_clock(), last.clock + last.samples);
  CHECK_EQ(last_frame_clock, last.clock + last.samples - 640);
  std::printf("    player: %lld frames shown, %lld dropped, %lld underruns, %lld late\n",
              static_cast<long long>(frames_taken), static_cast<long long>(player.stats().dropped_frames),
              static_cast<long long>(player.stats().underruns), static_cast<long long>(player.stats().late_chunks));
}

TEST(rig_only_mode_plays_voice_and_rig_and_interrupt_cuts_it_at_once) {
  mfruntime::Client& c = client();
  mfruntime::Player& player = c.player();
  while (player.poll_event()) {
  }
  // Rig-only mode from the next utterance on: no pixels (the server skips its video decoder), voice and rig frames.
  mfruntime::OutputSettings outputs = c.set_outputs(false);
  CHECK(!outputs.video && outputs.rig);
  mfruntime::Value before = c.state();
  CHECK(!before.at("video").as_bool() && before.at("rig").as_bool() && before.at("has_rig").as_bool());
  const auto t0 = Clock::now();
  const std::int64_t utt = c.say(
      "This is a much longer line, one that goes on and on for quite a while, so that there is plenty of time "
      "to interrupt it before it is done.");
  CHECK(g_rx.wait([&](auto& all) { return has_any(all, utt); }, 60.0));
  const double first_ms = std::chrono::duration<double, std::milli>(g_rx.of(utt).front().second - t0).count();
  std::printf("    say -> first chunk: %.1f ms (second line)\n", first_ms);
  std::vector<float> block(480 * 2);
  long long heard = 0;
  for (int i = 0; i < 5; ++i) heard += player.read_audio(block.data(), 480, 2);
  CHECK(heard > 0);  // it was playing
  std::optional<mfruntime::Frame> shown = player.take_frame();  // 50 ms in: its first frame is due
  CHECK(shown && shown->utterance == utt && !shown->has_video && shown->rgb.empty());
  CHECK(shown && shown->rig.size() == mfruntime::rig_controls().size());
  std::optional<std::int64_t> cut = c.interrupt();
  CHECK(cut.has_value() && *cut == utt);
  bool ended_interrupted = false;
  while (auto e = player.poll_event())
    if (e->type == PlayerEvent::Type::UtteranceEnded && e->utterance == utt) ended_interrupted = e->interrupted;
  CHECK(ended_interrupted);  // reported at once
  long long after = player.read_audio(block.data(), 480, 2);
  CHECK(after <= (16 + 80) * 3);  // at most the 1 ms lookahead and the 5 ms fade
  CHECK_EQ(player.read_audio(block.data(), 480, 2), 0);
  CHECK(g_rx.wait([&](auto& all) { return has_eou(all, utt); }, 30.0));
  auto chunks = g_rx.of(utt);
  CHECK(!chunks.empty() && chunks.back().first.eou && chunks.back().first.interrupted);
  CHECK(chunks.size() < 40);  // cut short (the whole line is far longer)
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const StreamChunk& k = chunks[i].first;
    CHECK_EQ(k.seq, static_cast<std::int64_t>(i));
    CHECK(k.video.empty());
    if (!k.is_end_marker())  // rig-only: no pixels, the frames still counted, rig frames there
      CHECK(!k.has_video && k.frames == 4 && k.controls == 28 && k.rig.size() == 4u * 28);
  }
  CHECK_EQ(player.read_audio(block.data(), 480, 2), 0);  // the rest of it stays silent

  mfruntime::Value st = c.state();
  CHECK_EQ(st.at("utterance").as_int(), utt);
  CHECK(!st.at("speaking").as_bool());
  CHECK_EQ(st.at("fps").as_int(), 25);
  CHECK_EQ(st.at("sample_rate").as_int(), 16000);
  CHECK_EQ(st.at("width").as_int(), chunks.front().first.width);
  CHECK(st.at("clock").as_double() >= chunks.back().first.pts);
  std::printf("    state: %s\n", st.to_string().c_str());
  outputs = c.set_outputs(true);  // video again for the tests that follow
  CHECK(outputs.video && outputs.rig);
  CHECK(c.state().at("video").as_bool());
}

TEST(a_listening_character_streams_idle_chunks_until_it_is_told_to_stop) {
  mfruntime::Client& c = client();
  const std::int64_t before = c.state().at("utterance").as_int();
  CHECK_EQ(c.set_steps(2, 1), 2);  // a floor for deadline-aware steps
  CHECK_EQ(c.stats().at("characters").at("default").at("min_steps").as_int(), 1);
  CHECK_EQ(c.set_steps(2, 2), 2);
  CHECK(c.set_idle(true));
  // The idle utterance: silent PCM, the rig's mouth closed and the sil viseme, paced to real time.
  std::int64_t idle = 0;
  CHECK(g_rx.wait([&](auto& all) {
    for (auto& k : all)
      if (k.first.utterance > before) idle = k.first.utterance;
    if (idle == 0) return false;
    int n = 0;
    for (auto& k : all) n += k.first.utterance == idle;
    return n >= 4;
  }, 30.0));
  mfruntime::Value st = c.state();
  CHECK(st.at("idle").as_bool() && st.at("idling").as_bool());
  // The rig eases from the last frame shown before (a line cut short) into the idle pose: the jaw closes and the
  // sil viseme takes over, steadily.
  float jaw = 2.0f, sil = -1.0f;
  for (const auto& ch : g_rx.of(idle)) {
    const StreamChunk& k = ch.first;
    if (k.is_end_marker()) continue;
    for (float v : k.pcm) CHECK_EQ(v, 0.0f);
    CHECK(k.has_rig());
    for (int f = 0; f < k.frames; ++f) {
      CHECK(k.rig_frame(f)[0] <= jaw + 1e-6f && k.rig_frame(f)[13] >= sil - 1e-6f);  // jawOpen, viseme_sil
      jaw = k.rig_frame(f)[0];
      sil = k.rig_frame(f)[13];
    }
  }
  CHECK(jaw < 0.1f && sil > 0.5f);
  CHECK(!c.set_idle(false));
  CHECK(g_rx.wait([&](auto& all) { return has_eou(all, idle); }, 30.0));
}

TEST(a_malformed_request_gets_the_servers_error_and_the_client_keeps_working) {
  mfruntime::Client& c = client();
  CHECK_THROWS(c.say(""), mfruntime::ServerError, "empty");
  CHECK_THROWS(c.request("dance"), mfruntime::ServerError, "unknown op 'dance'");
  CHECK_THROWS(c.set_steps(500), mfruntime::ServerError, "steps");
  CHECK_THROWS(c.request("set_outputs", mfruntime::Value::map({{"character", "default"}, {"video", "no"}})),
               mfruntime::ServerError, "must be bool");
  CHECK_EQ(c.ping().at("protocol").as_int(), 3);
  mfruntime::Value st = c.stats();
  CHECK(st.at("characters").at("default").at("utterances").as_int() >= 2);
  CHECK(st.at("server").at("errors").as_int() >= 3);
  mfruntime::Value face = c.set_character_seed(3);
  CHECK_EQ(face.at("character").as_string(), std::string("default"));
  CHECK(face.at("width").as_int() > 0);
  CHECK_EQ(c.client_stats().bad_messages, 0);
  CHECK_EQ(c.client_stats().restarts, 0);
  CHECK_EQ(c.client_stats().timeouts, 0);
}

TEST(a_request_without_a_server_times_out_clearly) {
  mfruntime::ClientConfig cfg;
  cfg.control_address = "tcp://127.0.0.1:9";  // nothing listens there
  cfg.request_timeout_ms = 300;
  mfruntime::Client lonely(cfg);
  CHECK_EQ(lonely.stream_address(), std::string("tcp://127.0.0.1:10"));
  lonely.connect();
  CHECK_THROWS(lonely.ping(), mfruntime::TimeoutError, "no reply to 'ping'");
  CHECK_THROWS(lonely.ping(), mfruntime::TimeoutError, "nothing accepted the connection: is mf serve running there?");
  CHECK_EQ(lonely.client_stats().timeouts, 2);  // a fresh socket each time, same answer
  lonely.close();
}

TEST(the_stream_port_given_as_the_control_address_is_named) {
  mfruntime::ClientConfig cfg;
  cfg.control_address = g_stream;  // a PUB socket: TCP connects, the ZeroMQ handshake never completes
  cfg.stream_address = g_control;
  cfg.request_timeout_ms = 1500;
  mfruntime::Client wrong(cfg);
  wrong.connect();
  CHECK_THROWS(wrong.ping(), mfruntime::TimeoutError, "the ZeroMQ handshake never completed: is this mf serve's control");
  wrong.close();
}

TEST(close_is_clean) {
  client().close();
  CHECK(!client().connected());
  CHECK_THROWS(client().ping(), mfruntime::Error, "not connected");
}

TEST(the_client_goes_on_after_the_server_restarts) {
  Received rx;
  std::unique_ptr<mfruntime::Client> c = make_client(rx);
  CHECK_EQ(c->ping().at("protocol").as_int(), 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the SUB subscription reaches the server
  CHECK_EQ(c->client_stats().restarts, 0);

  std::printf("RESTART-SERVER\n");  // the driver stops mf serve and starts a new one on the same ports
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);
  CHECK_EQ(line, std::string("restarted"));
  if (line != "restarted") return;

  // The stream reconnects by itself; once the client has seen that, the new server's chunks reach it.
  const auto t0 = Clock::now();
  while (c->client_stats().restarts < 1 && Clock::now() - t0 < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(c->client_stats().restarts >= 1);
  std::printf("    restart noticed after %.1f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the subscription reaches the new server

  std::int64_t utt = -1;
  int tries = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (utt < 0) {
    ++tries;
    try {
      utt = c->say("Back again after the restart.");
    } catch (const mfruntime::ServerError&) {
      throw;
    } catch (const mfruntime::TimeoutError& e) {
      if (Clock::now() > deadline) throw;
      std::printf("    say failed (%s): retrying\n", e.what());
    } catch (const std::runtime_error& e) {  // the transport's own errors (e.g. the control queue full)
      if (Clock::now() > deadline) throw;
      std::printf("    say failed (%s): retrying\n", e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::printf("    said after the restart in %d tries\n", tries);
  CHECK_EQ(utt, 1);  // a restarted server counts utterances from 1 again
  CHECK(rx.wait([&](auto& all) { return has_eou(all, utt); }, 60.0));
  auto chunks = rx.of(utt);
  CHECK(!chunks.empty());
  if (chunks.empty()) return;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    CHECK_EQ(chunks[i].first.seq, static_cast<std::int64_t>(i));  // the whole line, from seq 0
    CHECK_EQ(chunks[i].first.eou, i + 1 == chunks.size());
  }
  CHECK_EQ(chunks.front().first.clock, 0);  // the new server's clock starts at 0
  CHECK(!chunks.back().first.interrupted);
  CHECK(c->client_stats().restarts >= 1);
  CHECK_EQ(c->client_stats().bad_messages, 0);
  CHECK_EQ(c->player().newest_utterance(), utt);
  c->close();
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: test_live CONTROL_ADDRESS STREAM_ADDRESS  (a running mf serve)\n");
    return 2;
  }
  g_control = argv[1];
  g_stream = argv[2];
  int rc = check::run_all(argc > 3 ? argv[3] : nullptr);
  g_client.reset();
  return rc;
}
