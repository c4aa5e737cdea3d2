// crowd_players: N characters on one `mf serve` say a line at once, each played by its own mfruntime::Player pulled
// in real time (10-ms audio blocks, as an engine's audio thread does). Prints one JSON line per character: whether
// its line was taken (or refused busy), the steps asked, and the player's counts — underruns (playback ran dry
// mid-line), late chunks, lost chunks. benchmarks/overload.py runs it.
//
//   crowd_players [--control tcp://127.0.0.1:5555] [--characters 16] [--steps 4] [--min-steps 1] [--text "..."]
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mfruntime/mfruntime.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Crowd {
  std::unique_ptr<mfruntime::Client> client;
  std::int64_t utterance = 0;  // 0: refused
  std::string refused;
  bool started = false, ended = false, interrupted = false;
};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += (c == '\n' ? ' ' : c);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string control = "tcp://127.0.0.1:5555";
  std::string text = "Welcome, traveller. The road ahead is long, so rest here by the fire tonight.";
  int n = 16, steps = 4, min_steps = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "crowd_players: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--control") control = value();
    else if (a == "--characters") n = std::stoi(value());
    else if (a == "--steps") steps = std::stoi(value());
    else if (a == "--min-steps") min_steps = std::stoi(value());
    else if (a == "--text") text = value();
    else {
      std::fprintf(stderr, "usage: crowd_players [--control ADDR] [--characters N] [--steps S] [--min-steps M] [--text T]\n");
      return 2;
    }
  }
  constexpr int kRate = 16000, kBlock = 160;  // 10-ms blocks at the stream's own rate (no resampling)
  std::vector<Crowd> crowd(static_cast<std::size_t>(n));
  try {
    for (int i = 0; i < n; ++i) {
      mfruntime::ClientConfig cfg;
      cfg.control_address = control;
      cfg.character = "crowd" + std::to_string(i);
      cfg.output_rate = kRate;
      cfg.request_timeout_ms = 60000;
      crowd[i].client = std::make_unique<mfruntime::Client>(cfg);
      crowd[i].client->connect();
      crowd[i].client->set_character_seed(i);
      crowd[i].client->set_steps(steps, min_steps);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the stream subscriptions are in place
    for (auto& c : crowd) {
      try {
        c.utterance = c.client->say(text);
      } catch (const mfruntime::ServerError& e) {
        c.refused = e.what();
      }
    }
  } catch (const mfruntime::Error& e) {
    std::fprintf(stderr, "crowd_players: %s\n", e.what());
    return 1;
  }
  // The audio threads: every 10 ms each player gives one block, as a game engine's audio callback would.
  std::vector<float> block(kBlock);
  const auto t0 = Clock::now();
  auto next = t0;
  std::int64_t tick = 0;
  for (;;) {
    bool open = false;
    for (auto& c : crowd) {
      if (!c.utterance || c.ended) continue;
      c.client->player().read_audio(block.data(), kBlock, 1);
      while (auto ev = c.client->player().poll_event()) {
        if (ev->utterance != c.utterance) continue;
        if (ev->type == mfruntime::PlayerEvent::Type::UtteranceStarted) c.started = true;
        else {
          c.ended = true;
          c.interrupted = ev->interrupted;
        }
      }
      open = open || !c.ended;
    }
    if (!open || Clock::now() - t0 > std::chrono::seconds(180)) break;
    next = t0 + std::chrono::milliseconds(10 * ++tick);
    std::this_thread::sleep_until(next);
  }
  for (int i = 0; i < n; ++i) {
    auto& c = crowd[i];
    const auto st = c.client->player().stats();
    std::printf("{\"character\": \"crowd%d\", \"taken\": %s, \"refused\": \"%s\", \"ended\": %s, \"interrupted\": %s, "
                "\"chunks\": %lld, \"underruns\": %lld, \"late_chunks\": %lld, \"lost\": %lld}\n",
                i, c.utterance ? "true" : "false", escape(c.refused).c_str(), c.ended ? "true" : "false",
                c.interrupted ? "true" : "false", static_cast<long long>(st.chunks), static_cast<long long>(st.underruns),
                static_cast<long long>(st.late_chunks), static_cast<long long>(st.lost));
    c.client->close();
  }
  return 0;
}
