// The resampler and the playback rules of mfruntime::Player (no network).
#include <atomic>
#include <cmath>
#include <thread>

#include "check.hpp"
#include "mfruntime/player.hpp"
#include "mfruntime/resampler.hpp"

using mfruntime::Frame;
using mfruntime::Player;
using mfruntime::PlayerConfig;
using mfruntime::PlayerEvent;
using mfruntime::Resampler;
using mfruntime::StreamChunk;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kSpc = 2560;  // samples per chunk at 16 kHz (160 ms, 4 frames at 25 fps)

// A chunk of `character`: PCM constant `level`, frame i's first byte = (seq·frames + i) mod 256.
StreamChunk chunk(std::int64_t utt, std::int64_t seq, std::int64_t clock, bool eou = false, bool interrupted = false,
                  int samples = kSpc, float level = 0.5f, const std::string& character = "default") {
  StreamChunk c;
  c.character = character;
  c.utterance = utt;
  c.seq = seq;
  c.clock = clock;
  c.pts = clock / 16000.0;
  c.width = c.height = 2;
  c.fps = 25;
  c.sample_rate = 16000;
  c.samples = samples;
  c.frames = samples / 640;
  c.eou = eou;
  c.interrupted = interrupted;
  c.video.assign(static_cast<std::size_t>(c.frames) * c.frame_bytes(), 0);
  for (int i = 0; i < c.frames; ++i) c.video[static_cast<std::size_t>(i) * c.frame_bytes()] = static_cast<std::uint8_t>(seq * c.frames + i);
  c.pcm.assign(static_cast<std::size_t>(samples), level);
  return c;
}

StreamChunk end_marker(std::int64_t utt, std::int64_t seq, std::int64_t clock) {
  return chunk(utt, seq, clock, true, true, 0);
}

// The chunk with `controls` rig values per frame: frame i's value k = (seq·frames + i) + k / 100 (so the integer part
// names the frame as the first pixel byte does). video false: rig-only (no pixels).
StreamChunk with_rig(StreamChunk c, int controls, bool video = true) {
  c.controls = controls;
  c.rig.resize(static_cast<std::size_t>(c.frames) * static_cast<std::size_t>(controls));
  for (int i = 0; i < c.frames; ++i)
    for (int k = 0; k < controls; ++k)
      c.rig[static_cast<std::size_t>(i * controls + k)] = static_cast<float>(c.seq * c.frames + i) + k / 100.0f;
  c.has_video = video;
  if (!video) c.video.clear();
  return c;
}

// The frame index a rig row carries (with_rig's pattern), checking the rest of the row on the way.
int rig_frame_index(const Frame& f) {
  if (f.rig.empty()) return -1;
  const int idx = static_cast<int>(f.rig[0]);
  for (int k = 0; k < f.controls; ++k)
    if (std::fabs(f.rig[static_cast<std::size_t>(k)] - (static_cast<float>(idx) + k / 100.0f)) > 1e-5f) return -2;
  return idx;
}

struct Played {
  std::vector<float> mono;  // channel 0
  long long audible = 0;
};

// Reads `frames` output frames in blocks of `block`, stereo; checks both channels carry the same sample.
Played play(Player& p, int frames, int block = 480) {
  Played out;
  std::vector<float> buf;
  int left = frames;
  while (left > 0) {
    int n = std::min(block, left);
    buf.assign(static_cast<std::size_t>(n) * 2, -9.0f);
    out.audible += p.read_audio(buf.data(), n, 2);
    for (int i = 0; i < n; ++i) {
      if (buf[2 * static_cast<std::size_t>(i)] != buf[2 * static_cast<std::size_t>(i) + 1]) {
        check::fail(__FILE__, __LINE__, "left and right differ");
        return out;
      }
      out.mono.push_back(buf[2 * static_cast<std::size_t>(i)]);
    }
    left -= n;
  }
  return out;
}

std::vector<PlayerEvent> events(Player& p) {
  std::vector<PlayerEvent> all;
  while (auto e = p.poll_event()) all.push_back(*e);
  return all;
}

bool is_started(const PlayerEvent& e, std::int64_t u) {
  return e.type == PlayerEvent::Type::UtteranceStarted && e.utterance == u;
}
bool is_ended(const PlayerEvent& e, std::int64_t u, bool interrupted) {
  return e.type == PlayerEvent::Type::UtteranceEnded && e.utterance == u && e.interrupted == interrupted;
}

std::vector<float> sine(int n, double hz, double rate, double amp = 1.0) {
  std::vector<float> s(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) s[static_cast<std::size_t>(i)] = static_cast<float>(amp * std::sin(2 * kPi * hz * i / rate));
  return s;
}

std::vector<float> resample_whole(int out_rate, const std::vector<float>& in) {
  Resampler r(16000, out_rate);
  r.push(in.data(), in.size());
  r.push_silence(static_cast<std::size_t>(r.half_taps()));
  std::vector<float> out(in.size() * static_cast<std::size_t>(out_rate) / 16000 + 64);
  out.resize(r.pull(out.data(), out.size()));
  return out;
}

}  // namespace

// --- resampler ---------------------------------------------------------------------------------------

TEST(resampler_keeps_a_1khz_sine_at_48k_and_44k1) {
  for (int rate : {48000, 44100}) {
    std::vector<float> in = sine(16000, 1000.0, 16000.0);
    std::vector<float> out = resample_whole(rate, in);
    CHECK_EQ(out.size(), static_cast<std::size_t>(rate));  // exactly one second out for one second in
    // Output k sits at input time k/rate: it must be the same sine at the output rate (frequency, phase, amplitude).
    double max_err = 0.0, peak = 0.0;
    int crossings = 0;
    for (std::size_t k = 64; k + 64 < out.size(); ++k) {
      double want = std::sin(2 * kPi * 1000.0 * static_cast<double>(k) / rate);
      max_err = std::max(max_err, std::fabs(out[k] - want));
      peak = std::max(peak, static_cast<double>(std::fabs(out[k])));
      if ((out[k - 1] < 0) != (out[k] < 0)) ++crossings;
    }
    CHECK(max_err < 2e-3);
    CHECK_NEAR(peak, 1.0, 2e-3);
    CHECK_NEAR(crossings, 2.0 * 1000.0 * (out.size() - 128) / rate, 2.0);  // two per period: still 1 kHz
  }
}

TEST(resampler_chunked_output_equals_whole_output_exactly) {
  for (int rate : {48000, 44100, 22050}) {
    std::vector<float> in = sine(12345, 440.0, 16000.0, 0.7);
    for (std::size_t i = 0; i < in.size(); i += 97) in[i] += 0.2f;  // something less smooth
    std::vector<float> whole = resample_whole(rate, in);
    Resampler r(16000, rate);
    std::vector<float> chunked, buf(4096);
    std::size_t pos = 0, step = 0;
    const std::size_t in_steps[] = {1, 7, 160, 333, 2560, 13, 999};
    const std::size_t out_steps[] = {5, 480, 1, 1024, 77};
    while (pos < in.size()) {
      std::size_t n = std::min(in_steps[step % 7], in.size() - pos);
      r.push(in.data() + pos, n);
      pos += n;
      std::size_t got;
      do {
        got = r.pull(buf.data(), out_steps[step % 5]);
        chunked.insert(chunked.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
      } while (got > 0);
      ++step;
    }
    r.push_silence(static_cast<std::size_t>(r.half_taps()));
    std::size_t got;
    while ((got = r.pull(buf.data(), 100)) > 0) chunked.insert(chunked.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
    CHECK_EQ(chunked.size(), whole.size());
    CHECK(chunked == whole);  // bit for bit
    // The count is exact: ceil(n · rate / 16000) outputs lie before input n.
    CHECK_EQ(static_cast<long long>(whole.size()), (static_cast<long long>(in.size()) * rate + 15999) / 16000);
    CHECK_EQ(r.produced(), static_cast<std::int64_t>(whole.size()));
  }
}

TEST(resampler_never_drifts_over_a_long_stream) {
  Resampler r(16000, 44100);
  std::vector<float> in(2560, 0.25f), out(8000);
  long long total = 0;
  for (int i = 0; i < 2000; ++i) {  // 320 s of audio in chunks
    r.push(in.data(), in.size());
    std::size_t got;
    while ((got = r.pull(out.data(), out.size())) > 0) total += static_cast<long long>(got);
  }
  // All outputs before input 2000·2560 − half (the rest waits for the lookahead): exact integer arithmetic.
  long long inputs = 2000LL * 2560 - r.half_taps();
  CHECK_EQ(total, (inputs * 44100 + 15999) / 16000);
  CHECK_EQ(r.position(), (total * 16000) / 44100);
  CHECK_NEAR(out[0], 0.25, 1e-5);  // unit gain at DC
}

// --- player ------------------------------------------------------------------------------------------

TEST(player_prebuffers_then_starts_and_keeps_the_clock) {
  PlayerConfig cfg;
  cfg.prebuffer_ms = 80;  // 1280 samples
  Player p(cfg);
  CHECK(p.push(chunk(1, 0, 16000, false, false, 640)));  // 40 ms
  Played a = play(p, 480);
  CHECK_EQ(a.audible, 0);
  CHECK_EQ(p.audio_clock(), 0);  // holds: nothing started
  CHECK(events(p).empty());
  for (float s : a.mono) CHECK_EQ(s, 0.0f);
  CHECK(p.push(chunk(1, 1, 16640, false, false, 640)));  // 80 ms buffered: starts
  Played b = play(p, 480);
  CHECK_EQ(b.audible, 480);
  CHECK_EQ(p.audio_clock(), 16000 + 160);  // 480 outputs at 48 kHz = 160 source samples
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 1 && is_started(ev[0], 1));
  CHECK_NEAR(b.mono[240], 0.5, 1e-4);  // the chunk's level, through the resampler
  CHECK_NEAR(p.buffered_ms(), 80.0 - 10.0 - 1.0, 0.01);  // 1 ms of lookahead is already in the resampler
}

TEST(player_starts_on_eou_below_prebuffer_and_ends_exactly) {
  PlayerConfig cfg;
  cfg.prebuffer_ms = 500;
  Player p(cfg);
  p.push(chunk(4, 0, 3200, false, false, 640));
  CHECK_EQ(play(p, 480).audible, 0);
  p.push(chunk(4, 1, 3840, true, false, 640));  // eou: starts although under 500 ms
  Played a = play(p, 10000);
  CHECK_EQ(a.audible, 2 * 640 * 3);  // every sample played, exactly
  CHECK_EQ(p.audio_clock(), 3200 + 1280);
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 2 && is_started(ev[0], 4) && is_ended(ev[1], 4, false));
  CHECK_EQ(p.playing_utterance(), 0);
  CHECK_EQ(play(p, 480).audible, 0);  // idle: silence, clock holds
  CHECK_EQ(p.audio_clock(), 4480);
}

TEST(player_output_count_is_exact_at_44k1) {
  PlayerConfig cfg;
  cfg.output_rate = 44100;
  Player p(cfg);
  p.push(chunk(1, 0, 0));
  p.push(chunk(1, 1, kSpc));
  p.push(chunk(1, 2, 2 * kSpc, true));
  Played a = play(p, 30000, 441);
  CHECK_EQ(a.audible, 3LL * kSpc * 44100 / 16000);  // 21168
  CHECK_EQ(p.audio_clock(), 3 * kSpc);
}

TEST(player_frames_are_due_by_clock_latest_wins_never_out_of_order) {
  Player p;
  p.push(chunk(1, 0, 1000));
  p.push(chunk(1, 1, 1000 + kSpc, true));
  CHECK(!p.take_frame());  // not started
  play(p, 3);              // clock 1001: frame 0 (clock 1000) is due
  auto f0 = p.take_frame();
  CHECK(f0 && f0->rgb[0] == 0 && f0->clock == 1000 && f0->utterance == 1 && f0->width == 2 && f0->rgb.size() == 12u);
  CHECK(!p.take_frame());                      // nothing new until the next frame's clock
  play(p, 2 * 640 * 3);                        // clock 1000 + 1 + 1280: frames 1 and 2 due
  auto f2 = p.take_frame();
  CHECK(f2 && f2->rgb[0] == 2 && f2->clock == 1000 + 1280);
  CHECK_EQ(p.stats().dropped_frames, 1);       // frame 1 was never shown
  CHECK(!p.take_frame());
  std::int64_t last_clock = f2->clock;
  int taken = 2;
  for (int i = 0; i < 100; ++i) {              // play the rest one frame period at a time
    play(p, 640 * 3);
    if (auto f = p.take_frame()) {
      CHECK(f->clock > last_clock);
      CHECK(f->clock <= p.audio_clock() || p.playing_utterance() == 0);
      last_clock = f->clock;
      ++taken;
    }
  }
  CHECK_EQ(last_clock, 1000 + kSpc + 3 * 640);  // the last frame of the utterance
  CHECK_EQ(taken + p.stats().dropped_frames, 8);
}

TEST(player_underrun_gives_silence_and_holds_the_clock) {
  Player p;
  p.push(chunk(1, 0, 0));
  Played a = play(p, 10000);
  CHECK(a.audible < 10000);
  CHECK(a.audible >= (kSpc - 16) * 3 - 3);  // all but the resampler's 1 ms lookahead
  const std::int64_t held = p.audio_clock();
  CHECK(held > kSpc - 20 && held <= kSpc);
  CHECK_EQ(p.stats().underruns, 1);
  Played b = play(p, 4800);
  CHECK_EQ(b.audible, 0);
  CHECK_EQ(p.audio_clock(), held);
  CHECK_EQ(p.stats().underruns, 1);  // one underrun, however long
  for (float s : b.mono) CHECK_EQ(s, 0.0f);
  p.push(chunk(1, 1, kSpc, true));
  Played c = play(p, 30000);
  CHECK_EQ(a.audible + c.audible, 2LL * kSpc * 3);  // nothing skipped: the clock went on from where it held
  CHECK_EQ(p.audio_clock(), 2 * kSpc);
  CHECK_NEAR(c.mono[10], 0.5, 1e-3);
}

TEST(player_seq_gap_is_silence_and_the_clock_runs_on) {
  Player p;
  p.push(chunk(2, 0, 0));
  p.push(chunk(2, 2, 2 * kSpc, true));  // seq 1 lost
  CHECK_EQ(p.stats().lost, 1);
  Played a = play(p, 3 * kSpc * 3 + 1000);
  CHECK_EQ(a.audible, 3LL * kSpc * 3);  // the gap takes its time, in silence
  CHECK_NEAR(a.mono[kSpc * 3 / 2], 0.5, 1e-3);
  CHECK_NEAR(a.mono[kSpc * 3 + kSpc * 3 / 2], 0.0, 1e-6);
  CHECK_NEAR(a.mono[2 * kSpc * 3 + kSpc * 3 / 2], 0.5, 1e-3);
  CHECK_EQ(p.audio_clock(), 3 * kSpc);
  CHECK_EQ(p.stats().underruns, 0);
  // No frames in the gap: the last one of seq 0 holds until seq 2's frames.
  Player q;
  q.push(chunk(2, 0, 0));
  q.push(chunk(2, 2, 2 * kSpc, true));
  play(q, (kSpc + 1000) * 3);  // in the gap
  auto f = q.take_frame();
  CHECK(f && f->rgb[0] == 3);  // seq 0's last frame
  play(q, 900 * 3);
  CHECK(!q.take_frame());      // still in the gap: hold
  play(q, 1000 * 3);           // into seq 2
  auto g = q.take_frame();
  CHECK(g && g->rgb[0] == 8 && g->clock == 2 * kSpc);
}

TEST(player_newer_utterance_supersedes_an_unfinished_one) {
  Player p;
  p.push(chunk(1, 0, 0));
  p.push(chunk(1, 1, kSpc));
  Played a = play(p, 1000 * 3);  // clock 1000 in utterance 1
  CHECK_EQ(a.audible, 3000);
  events(p);
  p.push(end_marker(1, 2, 2 * kSpc));               // the server superseded it ...
  p.push(chunk(2, 0, 2 * kSpc, false, false, kSpc, -0.5f));  // ... by utterance 2
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 1 && is_ended(ev[0], 1, true));
  Played b = play(p, 2000);
  // Utterance 1 fades out at the output over 5 ms from the cut (80 samples = 240 outputs), then utterance 2 (-0.5).
  CHECK_NEAR(b.mono[0], 0.5, 3e-3);
  CHECK_NEAR(b.mono[120], 0.25, 0.01);  // half way through the fade
  for (int i = 1; i < 240; ++i) CHECK(b.mono[static_cast<std::size_t>(i)] <= b.mono[static_cast<std::size_t>(i) - 1] + 1e-6);
  CHECK(b.mono[239] < 0.01f);
  float quiet = 1.0f;  // between the fade's end and utterance 2's onset the output passes through silence
  for (int i = 235; i < 250; ++i) quiet = std::min(quiet, std::fabs(b.mono[static_cast<std::size_t>(i)]));
  CHECK(quiet < 0.01f);
  CHECK_NEAR(b.mono[1500], -0.5, 1e-3);
  ev = events(p);
  CHECK(ev.size() == 1 && is_started(ev[0], 2));
  CHECK_EQ(p.playing_utterance(), 2);
  CHECK(p.audio_clock() > 2 * kSpc && p.audio_clock() < 2 * kSpc + 2000 / 3);
  // Utterance 1's frames after the cut are gone: the frames now come from utterance 2.
  auto f = p.take_frame();
  CHECK(f && f->utterance == 2);
  CHECK(!p.push(chunk(1, 3, 3 * kSpc)));  // anything more of utterance 1 is late
  CHECK_EQ(p.stats().late_chunks, 1);
}

TEST(player_next_utterance_follows_one_that_ended_normally) {
  Player p;
  p.push(chunk(1, 0, 0));
  p.push(chunk(1, 1, kSpc, true));  // complete
  play(p, 300);
  p.push(chunk(2, 0, 2 * kSpc, true, false, kSpc, -0.5f));  // the next line, queued on the stream clock
  Played a = play(p, 4 * kSpc * 3);
  CHECK_EQ(a.audible, 3LL * kSpc * 3 - 300);  // all of both
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 4 && is_started(ev[0], 1) && is_ended(ev[1], 1, false) && is_started(ev[2], 2) &&
        is_ended(ev[3], 2, false));
  CHECK_NEAR(a.mono[2 * kSpc * 3 - 300 - 100], 0.5, 1e-3);  // utterance 1 played to its end ...
  CHECK_NEAR(a.mono[2 * kSpc * 3 - 300 + 200], -0.5, 1e-3);  // ... then 2
  CHECK_EQ(p.audio_clock(), 3 * kSpc);
}

TEST(player_end_marker_ends_the_utterance_after_its_audio) {
  Player p;
  p.push(chunk(3, 0, 0));
  p.push(chunk(3, 1, kSpc));
  p.push(end_marker(3, 2, 2 * kSpc));
  Played a = play(p, 3 * kSpc * 3);
  CHECK_EQ(a.audible, 2LL * kSpc * 3);
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 2 && is_started(ev[0], 3) && is_ended(ev[1], 3, true));
  // An utterance that is only an end marker ends without playing.
  p.push(end_marker(4, 0, 2 * kSpc));
  CHECK_EQ(play(p, 480).audible, 0);
  ev = events(p);
  CHECK(ev.size() == 1 && is_ended(ev[0], 4, true));
}

TEST(player_cut_fades_out_ignores_the_rest_and_reports_the_end) {
  Player p;
  p.push(chunk(5, 0, 0));
  p.push(chunk(5, 1, kSpc));
  play(p, 600);
  events(p);
  p.cut(5);
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 1 && is_ended(ev[0], 5, true));
  CHECK(!p.push(chunk(5, 2, 2 * kSpc)));  // later chunks of the cut utterance are ignored
  Played a = play(p, 2000);
  CHECK_EQ(a.audible, 80 * 3);  // a 5 ms fade at the output from the cut, then silence
  CHECK_NEAR(a.mono[120], 0.25, 0.01);
  for (std::size_t i = 80 * 3; i < a.mono.size(); ++i) CHECK_EQ(a.mono[i], 0.0f);
  const std::int64_t held = p.audio_clock();
  CHECK_EQ(play(p, 480).audible, 0);
  CHECK_EQ(p.audio_clock(), held);
  CHECK(events(p).empty());  // ended once only
  CHECK(!p.take_frame() || p.take_frame()->clock <= held);
  // The next utterance plays.
  CHECK(p.push(chunk(6, 0, 2 * kSpc, true)));
  CHECK_EQ(play(p, kSpc * 3 + 100).audible, kSpc * 3);
  // Cutting an utterance not seen yet (said, no chunk arrived) reports its end at once.
  p.cut(7);
  ev = events(p);
  CHECK(ev.size() == 3 && is_started(ev[0], 6) && is_ended(ev[1], 6, false) && is_ended(ev[2], 7, true));
  CHECK(!p.push(chunk(7, 0, 3 * kSpc)));
}

TEST(player_reset_forgets_ids_and_clock_after_a_server_restart) {
  Player p;
  p.push(chunk(9, 0, 160000));
  play(p, 480);
  events(p);
  p.reset();
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 1 && is_ended(ev[0], 9, true));
  CHECK_EQ(p.audio_clock(), 0);
  CHECK_EQ(p.newest_utterance(), 0);
  CHECK(!p.take_frame());
  CHECK(p.push(chunk(1, 0, 0, true)));  // the restarted server's first utterance
  CHECK_EQ(play(p, kSpc * 3 + 10).audible, kSpc * 3);
  CHECK_EQ(p.audio_clock(), kSpc);
}

TEST(player_drops_late_chunks_and_ignores_other_characters) {
  Player p;
  CHECK(!p.push(chunk(1, 0, 0, false, false, kSpc, 0.5f, "default2")));
  CHECK_EQ(p.stats().ignored, 1);
  p.push(chunk(1, 0, 0));
  p.push(chunk(1, 2, 2 * kSpc));  // seq 1 missing
  CHECK(!p.push(chunk(1, 2, 2 * kSpc)));  // a duplicate
  CHECK_EQ(p.stats().ignored, 2);
  play(p, (2 * kSpc + 100) * 3);  // past seq 1's span
  CHECK(!p.push(chunk(1, 1, kSpc)));  // arrives after its time: dropped
  CHECK_EQ(p.stats().late_chunks, 1);
  CHECK_EQ(p.stats().chunks, 4);  // of this character
  // A chunk of an utterance that is already over is late too.
  p.push(chunk(1, 3, 3 * kSpc, true));
  play(p, 3 * kSpc * 3);
  CHECK(!p.push(chunk(1, 4, 4 * kSpc)));
  CHECK_EQ(p.stats().late_chunks, 2);
}

TEST(player_is_thread_safe_with_three_threads) {
  Player p;
  const int chunks = 40;
  std::atomic<bool> pushed{false};
  std::thread net([&] {
    for (int i = 0; i < chunks; ++i) {
      p.push(chunk(1, i, static_cast<std::int64_t>(i) * kSpc, i == chunks - 1));
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    pushed = true;
  });
  std::atomic<long long> audible{0};
  std::atomic<bool> done{false};
  std::thread audio([&] {
    std::vector<float> buf(2 * 512);
    while (!done) {
      audible += p.read_audio(buf.data(), 512, 2);
      if (pushed && p.playing_utterance() == 0 && audible > 0) done = true;
    }
  });
  int taken = 0;
  std::int64_t last = -1;
  bool ordered = true;
  while (!done) {
    if (auto f = p.take_frame()) {
      ordered = ordered && f->clock > last;
      last = f->clock;
      ++taken;
    }
    std::this_thread::yield();
  }
  net.join();
  audio.join();
  while (auto f = p.take_frame()) {
    ordered = ordered && f->clock > last;
    last = f->clock;
    ++taken;
  }
  CHECK(ordered);
  CHECK_EQ(audible.load(), static_cast<long long>(chunks) * kSpc * 3);
  CHECK_EQ(taken + p.stats().dropped_frames, chunks * 4);
  CHECK_EQ(last, static_cast<std::int64_t>(chunks) * kSpc - 640);
}

TEST(player_cut_fades_at_the_output_even_at_a_chunk_boundary) {
  // A constant 0.5 line cut at several offsets (mid-chunk, just before and at the chunk boundary), with its next
  // chunk buffered or not (then the cut line's last samples are all in the resampler already).
  for (int rate : {16000, 48000})
    for (bool second : {true, false})
      for (int at : {1000, 2481, 2500, 2560}) {
        PlayerConfig cfg;
        cfg.output_rate = rate;
        cfg.prebuffer_ms = 0;
        Player p(cfg);
        p.push(chunk(1, 0, 0));
        if (second) p.push(chunk(1, 1, kSpc));
        play(p, at * rate / 16000, 97);
        p.cut(1);
        Played tail = play(p, 400 * rate / 16000, 41);
        int last = -1;
        for (std::size_t i = 0; i < tail.mono.size(); ++i)
          if (std::fabs(tail.mono[i]) > 1e-6f) last = static_cast<int>(i);
        const std::string where = "rate " + std::to_string(rate) + (second ? ", two chunks" : ", one chunk") +
                                  ", cut at " + std::to_string(at) + ": ";
        if (last >= 100 * rate / 16000) check::fail(__FILE__, __LINE__, where + "sound until output " + std::to_string(last));
        for (int i = 1; i <= last; ++i)
          if (tail.mono[static_cast<std::size_t>(i)] > tail.mono[static_cast<std::size_t>(i) - 1] + 1e-6f)
            check::fail(__FILE__, __LINE__, where + "the level rises at output " + std::to_string(i));
        if (last >= 0 && std::fabs(tail.mono[static_cast<std::size_t>(last)]) >= 0.05f)
          check::fail(__FILE__, __LINE__, where + "a step to silence from " + std::to_string(tail.mono[static_cast<std::size_t>(last)]));
        std::vector<PlayerEvent> ev = events(p);
        CHECK(ev.size() == 2 && is_started(ev[0], 1) && is_ended(ev[1], 1, true));
      }
}

TEST(player_reset_ends_every_open_line_buffered_or_prebuffering) {
  PlayerConfig cfg;
  cfg.prebuffer_ms = 1000;
  Player p(cfg);
  p.push(chunk(1, 0, 0, true));  // complete: starts at once and plays
  p.push(chunk(2, 0, kSpc));     // queued behind it (1 ended normally), not heard yet
  play(p, 300);
  events(p);
  p.reset();
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 2 && is_ended(ev[0], 1, true) && is_ended(ev[1], 2, true));
  Player q(cfg);
  q.push(chunk(3, 0, 0));  // prebuffering (160 ms of 1000 ms): nothing heard, no Started
  CHECK_EQ(play(q, 480).audible, 0);
  q.reset();
  ev = events(q);
  CHECK(ev.size() == 1 && is_ended(ev[0], 3, true));
}

TEST(player_a_long_line_queued_ahead_shows_every_frame) {
  // The server runs ahead of real time: a 20-s line arrives at once. Every frame must still be shown in its turn.
  PlayerConfig cfg;
  cfg.prebuffer_ms = 0;
  Player p(cfg);
  for (int s = 0; s < 125; ++s) CHECK(p.push(chunk(1, s, static_cast<std::int64_t>(s) * kSpc, s == 124)));
  play(p, 320 * 3);  // look mid-frame: each frame period then has exactly one new frame
  int shown = 0;
  for (int k = 0; k < 500; ++k) {
    if (auto f = p.take_frame()) {
      CHECK_EQ(f->clock, static_cast<std::int64_t>(shown) * 640);
      ++shown;
    }
    play(p, 640 * 3);
  }
  CHECK_EQ(shown, 500);
  CHECK_EQ(p.stats().dropped_frames, 0);
  CHECK_EQ(p.stats().overflow_chunks, 0);
}

TEST(player_queue_is_bounded_by_time_when_nobody_plays) {
  PlayerConfig cfg;
  cfg.prebuffer_ms = 0;
  cfg.max_queued_seconds = 1;  // 16000 samples: 6 chunks of 2560
  Player p(cfg);
  int accepted = 0;
  for (int s = 0; s < 20; ++s) accepted += p.push(chunk(1, s, static_cast<std::int64_t>(s) * kSpc, s == 19)) ? 1 : 0;
  CHECK_EQ(accepted, 6);
  CHECK_EQ(p.stats().overflow_chunks, 14);
  CHECK(p.buffered_ms() <= 1000.0);
  // The eou came in an overflowing chunk: the line still ends (interrupted) after the audio it kept.
  Played a = play(p, 30 * kSpc * 3, 4800);
  CHECK_EQ(a.audible, 6LL * kSpc * 3);
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 2 && is_started(ev[0], 1) && is_ended(ev[1], 1, true));
  // Whole chunks are dropped, frames with their audio: what was kept shows in order, nothing else waits.
  int shown = 0;
  while (p.take_frame()) ++shown;
  CHECK_EQ(shown, 1);  // all due: the newest one
  CHECK_EQ(p.stats().dropped_frames, 6 * 4 - 1);
}

TEST(player_stays_bounded_for_audio_only_and_event_less_consumers) {
  PlayerConfig cfg;
  cfg.prebuffer_ms = 0;
  cfg.max_queued_seconds = 1;
  Player p(cfg);
  // Audio is played, take_frame never called: due frames are dropped at push, so the queue never fills.
  for (int s = 0; s < 50; ++s) {
    CHECK(p.push(chunk(1, s, static_cast<std::int64_t>(s) * kSpc)));
    play(p, kSpc * 3, 4800);
  }
  CHECK_EQ(p.stats().overflow_chunks, 0);
  CHECK(p.stats().dropped_frames >= 49 * 4 - 4);
  // Events nobody polls: the oldest go beyond 1024.
  for (std::int64_t u = 2; u < 3002; ++u) p.cut(u);
  std::vector<PlayerEvent> ev = events(p);
  CHECK_EQ(ev.size(), 1024u);
  CHECK(!ev.empty() && is_ended(ev.back(), 3001, true));
  // Utterances that are never played (end markers alone, nobody reads audio): at most 1024 queued.
  Player q(cfg);
  for (std::int64_t u = 1; u <= 1500; ++u) q.push(chunk(u, 0, 0, true, false, 0));
  CHECK_EQ(q.stats().overflow_chunks, 1500 - 1024);
}

TEST(player_output_latency_delays_frames_until_heard) {
  PlayerConfig cfg;
  cfg.output_rate = 16000;
  cfg.prebuffer_ms = 0;
  cfg.output_latency_ms = 40;  // 640 samples in the engine's buffers
  Player p(cfg);
  p.push(chunk(1, 0, 0, true));
  play(p, 10);
  CHECK(!p.take_frame());  // frame 0 waits until its audio has left the engine's buffers
  play(p, 640);
  auto f = p.take_frame();
  CHECK(f && f->clock == 0);
  CHECK_EQ(p.audio_clock(), 650);  // the clock itself is what read_audio gave
  // The line's last frames wait for the silence after it to cover the latency.
  PlayerConfig slow = cfg;
  slow.output_latency_ms = 100;  // 1600 samples
  Player q(slow);
  q.push(chunk(1, 0, 0, true));
  play(q, kSpc + 10);  // the line has finished: heard up to 2570 - 1600
  auto g = q.take_frame();
  CHECK(g && g->clock == 640);
  play(q, 900);  // 3470 - 1600 = 1870: not yet frame 3 (1920)
  auto h = q.take_frame();
  CHECK(h && h->clock == 1280);
  play(q, 100);
  auto k = q.take_frame();
  CHECK(k && k->clock == 1920);
  CHECK_EQ(q.stats().dropped_frames, 1);
}

// --- the rig stream --------------------------------------------------------------------------------

TEST(player_rig_frames_come_with_their_video_frames_on_the_audio_clock) {
  Player p;
  p.push(with_rig(chunk(1, 0, 1000), 28));
  p.push(with_rig(chunk(1, 1, 1000 + kSpc, true), 28));
  CHECK(!p.take_frame());  // not started: neither pixels nor rig
  play(p, 3);              // clock 1001: frame 0 is due
  auto f0 = p.take_frame();
  CHECK(f0 && f0->clock == 1000 && f0->has_video && f0->rgb[0] == 0);
  CHECK(f0 && f0->controls == 28 && f0->rig.size() == 28u && f0->rig_version == mfruntime::kRigVersion);
  CHECK(f0 && rig_frame_index(*f0) == 0);
  play(p, 2 * 640 * 3);  // frames 1 and 2 due: the newest wins, pixels and rig of the same index
  auto f2 = p.take_frame();
  CHECK(f2 && f2->clock == 1000 + 1280 && f2->rgb[0] == 2 && rig_frame_index(*f2) == 2);
  CHECK_EQ(p.stats().dropped_frames, 1);
  int taken = 2;
  for (int i = 0; i < 20; ++i) {
    play(p, 640 * 3);
    if (auto f = p.take_frame()) {
      CHECK_EQ(rig_frame_index(*f), static_cast<int>(f->rgb[0]));  // every frame: the rig row of its own index
      CHECK_EQ(f->clock, 1000 + static_cast<std::int64_t>(f->rgb[0]) * 640);
      ++taken;
    }
  }
  CHECK_EQ(taken + p.stats().dropped_frames, 8);
}

TEST(player_plays_rig_only_chunks_audio_and_rig_frames_without_pixels) {
  PlayerConfig cfg;
  cfg.prebuffer_ms = 0;
  Player p(cfg);
  CHECK(p.push(with_rig(chunk(3, 0, 0), 28, false)));
  CHECK(p.push(with_rig(chunk(3, 1, kSpc), 28, false)));
  CHECK(p.push(with_rig(chunk(3, 2, 2 * kSpc, true), 28, false)));
  play(p, 320 * 3);  // mid-frame: one new frame per frame period from here on
  std::vector<int> shown;
  long long audible = 0;
  for (int k = 0; k < 14; ++k) {
    if (auto f = p.take_frame()) {
      CHECK(!f->has_video && f->rgb.empty());
      CHECK_EQ(f->width, 2);  // the header's frame size is still there
      CHECK_EQ(f->clock, static_cast<std::int64_t>(shown.size()) * 640);
      shown.push_back(rig_frame_index(*f));
    }
    audible += play(p, 640 * 3).audible;
  }
  CHECK_EQ(shown.size(), 12u);
  for (std::size_t i = 0; i < shown.size(); ++i) CHECK_EQ(shown[i], static_cast<int>(i));
  CHECK_EQ(audible + 320 * 3, 3LL * kSpc * 3);  // the voice plays in full
  CHECK_EQ(p.audio_clock(), 3 * kSpc);
  std::vector<PlayerEvent> ev = events(p);
  CHECK(ev.size() == 2 && is_started(ev[0], 3) && is_ended(ev[1], 3, false));
  CHECK_EQ(p.stats().dropped_frames, 0);
}

TEST(player_switches_between_video_rig_only_and_no_rig_lines) {
  // set_outputs applies from the next utterance: a line with pixels and rig, then a rig-only one, then pixels only.
  PlayerConfig cfg;
  cfg.prebuffer_ms = 0;
  Player p(cfg);
  p.push(with_rig(chunk(1, 0, 0, true), 28));
  p.push(with_rig(chunk(2, 0, kSpc, true), 28, false));
  p.push(chunk(3, 0, 2 * kSpc, true));
  int with_both = 0, rig_only = 0, video_only = 0;
  play(p, 320 * 3);  // mid-frame: one new frame per frame period from here on
  for (int k = 0; k < 13; ++k) {
    if (auto f = p.take_frame()) {
      if (f->has_video && !f->rig.empty()) ++with_both;
      if (!f->has_video && !f->rig.empty() && f->rgb.empty()) ++rig_only;
      if (f->has_video && f->rig.empty() && f->controls == 0 && !f->rgb.empty()) ++video_only;
      CHECK_EQ(f->utterance, f->clock / kSpc + 1);
    }
    play(p, 640 * 3);
  }
  CHECK_EQ(p.stats().dropped_frames, 0);
  CHECK_EQ(with_both, 4);
  CHECK_EQ(rig_only, 4);
  CHECK_EQ(video_only, 4);
  // A hand-made chunk whose rig does not fit its header is not played.
  StreamChunk odd = with_rig(chunk(4, 0, 3 * kSpc), 28);
  odd.rig.pop_back();
  CHECK(!p.push(odd));
  StreamChunk no_pixels = chunk(4, 0, 3 * kSpc);
  no_pixels.video.pop_back();
  CHECK(!p.push(no_pixels));
  CHECK_EQ(p.stats().ignored, 2);
}

int main(int argc, char** argv) { return check::run_all(argc > 1 ? argv[1] : nullptr); }
