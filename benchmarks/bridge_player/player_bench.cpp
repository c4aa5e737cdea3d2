// The C++ Player's cost on the engine's threads: a 20-s line of 64-px chunks pushed (network thread), then played
// at 48 kHz stereo in 1024-frame blocks with a take_frame after each (audio thread + frame update). Prints one line:
//   cpp push_us_per_chunk read_us_per_block cpu_fraction_of_real_time
// Run by `python -m benchmarks.bridges --player`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "mfruntime/player.hpp"

int main(int argc, char** argv) {
  const int size = argc > 1 ? std::atoi(argv[1]) : 64, chunks = 125, block = 1024, rate = 48000;
  std::vector<mfruntime::StreamChunk> line(chunks);
  for (int s = 0; s < chunks; ++s) {
    auto& c = line[s];
    c.character = "default";
    c.utterance = 1;
    c.seq = s;
    c.clock = s * 2560LL;
    c.pts = c.clock / 16000.0;
    c.width = c.height = size;
    c.frames = 4;
    c.fps = 25;
    c.sample_rate = 16000;
    c.samples = 2560;
    c.eou = s == chunks - 1;
    c.video.assign(static_cast<std::size_t>(4) * size * size * 3, 7);
    c.pcm.resize(2560);
    for (int n = 0; n < 2560; ++n) c.pcm[n] = 0.5f * static_cast<float>(std::sin(n * 0.05));
  }
  using Clock = std::chrono::steady_clock;
  double best_push = 1e30, best_read = 1e30;
  for (int round = 0; round < 5; ++round) {
    mfruntime::PlayerConfig cfg;
    cfg.output_rate = rate;
    cfg.prebuffer_ms = 0;
    mfruntime::Player p(cfg);
    auto t0 = Clock::now();
    for (const auto& c : line) p.push(c);
    best_push = std::min(best_push, std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / chunks);
    std::vector<float> buf(block * 2);
    int blocks = 0, shown = 0;
    bool ended = false;
    t0 = Clock::now();
    while (!ended) {
      p.read_audio(buf.data(), block, 2);
      if (p.take_frame()) ++shown;
      while (auto e = p.poll_event()) ended |= e->type == mfruntime::PlayerEvent::Type::UtteranceEnded;
      ++blocks;
    }
    best_read = std::min(best_read, std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / blocks);
    if (shown < chunks * 4 / 2) {
      std::fprintf(stderr, "only %d frames shown\n", shown);
      return 1;
    }
  }
  std::printf("cpp %.2f %.2f %.5f\n", best_push, best_read, best_read / 1e6 / (static_cast<double>(block) / rate));
  return 0;
}
