// say_to_wav: connect to `mf serve`, say a line, collect its chunks up to the end of the utterance and write the
// audio as a 16-bit 16 kHz mono WAV file. Prints the time from say() to the first chunk.
//
//   say_to_wav [--control tcp://127.0.0.1:5555] [--stream ADDR] [--character default] [--text "..."] [--out say.wav]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mfruntime/mfruntime.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Arrival {
  mfruntime::StreamChunk chunk;
  Clock::time_point at;
};

void put_u32(std::ofstream& f, std::uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                              static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

void put_u16(std::ofstream& f, std::uint16_t v) {
  const unsigned char b[2] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8)};
  f.write(reinterpret_cast<const char*>(b), 2);
}

bool write_wav(const std::string& path, const std::vector<float>& pcm, int rate) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return false;
  const std::uint32_t data = static_cast<std::uint32_t>(pcm.size() * 2);
  f.write("RIFF", 4);
  put_u32(f, 36 + data);
  f.write("WAVEfmt ", 8);
  put_u32(f, 16);
  put_u16(f, 1);  // PCM
  put_u16(f, 1);  // mono
  put_u32(f, static_cast<std::uint32_t>(rate));
  put_u32(f, static_cast<std::uint32_t>(rate) * 2);
  put_u16(f, 2);
  put_u16(f, 16);
  f.write("data", 4);
  put_u32(f, data);
  for (float s : pcm) {
    float c = std::max(-1.0f, std::min(1.0f, s));
    put_u16(f, static_cast<std::uint16_t>(static_cast<std::int16_t>(std::lround(c * 32767.0f))));
  }
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  mfruntime::ClientConfig cfg;
  std::string text = "Hello from the C plus plus client.";
  std::string out = "say.wav";
  std::string server_key, client_key;  // CURVE: the server's NAME.key and this client's NAME.key_secret (mf keys)
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "say_to_wav: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--control") cfg.control_address = value();
    else if (a == "--stream") cfg.stream_address = value();
    else if (a == "--character") cfg.character = value();
    else if (a == "--text") text = value();
    else if (a == "--out") out = value();
    else if (a == "--server-key") server_key = value();
    else if (a == "--client-key") client_key = value();
    else {
      std::fprintf(stderr, "usage: say_to_wav [--control ADDR] [--stream ADDR] [--character ID] [--text TEXT] [--out FILE]"
                           " [--server-key SERVER.key --client-key CLIENT.key_secret]\n");
      return 2;
    }
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Arrival> arrivals;
  cfg.on_chunk = [&](const mfruntime::StreamChunk& c) {
    std::lock_guard<std::mutex> lock(mu);
    arrivals.push_back({c, Clock::now()});
    cv.notify_all();
  };
  cfg.on_log = [](const std::string& line) { std::fprintf(stderr, "mfruntime: %s\n", line.c_str()); };

  try {
    if (!server_key.empty() || !client_key.empty()) {
      if (server_key.empty() || client_key.empty()) {
        std::fprintf(stderr, "say_to_wav: CURVE needs both --server-key and --client-key\n");
        return 2;
      }
      cfg.curve = mfruntime::load_curve_keys(server_key, client_key);
    }
    mfruntime::Client client(cfg);
    client.connect();
    client.ping();  // the control connection is up; give the stream subscription a moment too
    std::this_thread::sleep_for(std::chrono::milliseconds(300));

    const auto t0 = Clock::now();
    const std::int64_t utt = client.say(text);
    std::vector<float> pcm;
    std::size_t chunks = 0;
    double first_ms = -1.0;
    std::int64_t next_seq = 0;
    std::size_t seen = 0;
    bool done = false;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      if (!cv.wait_until(lock, deadline, [&] { return arrivals.size() > seen; })) {
        std::fprintf(stderr, "say_to_wav: utterance %lld did not end within 60 s\n", static_cast<long long>(utt));
        return 1;
      }
      for (; seen < arrivals.size() && !done; ++seen) {
        const Arrival& a = arrivals[seen];
        if (a.chunk.utterance != utt) continue;  // the end of an earlier line
        if (a.chunk.seq != next_seq)
          std::fprintf(stderr, "say_to_wav: seq %lld after %lld: chunks were lost\n", static_cast<long long>(a.chunk.seq),
                       static_cast<long long>(next_seq - 1));
        next_seq = a.chunk.seq + 1;
        if (first_ms < 0) first_ms = std::chrono::duration<double, std::milli>(a.at - t0).count();
        if (!a.chunk.is_end_marker()) {
          ++chunks;
          pcm.insert(pcm.end(), a.chunk.pcm.begin(), a.chunk.pcm.end());
        }
        done = a.chunk.eou;
      }
    }
    lock.unlock();
    client.close();
    if (!write_wav(out, pcm, 16000)) {
      std::fprintf(stderr, "say_to_wav: cannot write %s\n", out.c_str());
      return 1;
    }
    std::printf("utterance %lld: say -> first chunk %.1f ms, %zu chunks, %zu samples (%.2f s) -> %s\n",
                static_cast<long long>(utt), first_ms, chunks, pcm.size(), pcm.size() / 16000.0, out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "say_to_wav: %s\n", e.what());
    return 1;
  }
}
