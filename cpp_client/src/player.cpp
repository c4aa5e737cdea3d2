#include "mfruntime/player.hpp"

#include <algorithm>
#include <iterator>
#include <limits>
#include <stdexcept>

namespace mfruntime {

namespace {
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t kMaxEvents = 1024;      // unpolled events beyond this drop the oldest
constexpr std::size_t kMaxUtterances = 1024;  // utterances queued (nobody plays): chunks of more overflow
}

Player::Player(PlayerConfig cfg)
    : cfg_(std::move(cfg)),
      rs_(cfg_.source_rate, cfg_.output_rate),
      prebuffer_samples_(static_cast<std::int64_t>(cfg_.prebuffer_ms) * cfg_.source_rate / 1000),
      fade_samples_(std::max<std::int64_t>(1, static_cast<std::int64_t>(cfg_.fade_ms) * cfg_.source_rate / 1000)),
      latency_samples_(static_cast<std::int64_t>(std::max(0, cfg_.output_latency_ms)) * cfg_.source_rate / 1000),
      max_queued_samples_(static_cast<std::int64_t>(cfg_.max_queued_seconds) * cfg_.source_rate) {
  if (cfg_.prebuffer_ms < 0) throw std::invalid_argument("prebuffer_ms must be >= 0");
  if (cfg_.max_queued_seconds <= 0) throw std::invalid_argument("max_queued_seconds must be > 0");
}

bool Player::push(const StreamChunk& c) {
  // Copy the frames out before taking the lock (the audio thread must not wait on this).
  std::vector<Frame> frames;
  const std::size_t fb = c.frame_bytes();
  const std::size_t n = static_cast<std::size_t>(std::max(0, c.frames));
  const std::size_t nc = static_cast<std::size_t>(std::max(0, c.controls));
  bool usable = c.character == cfg_.character && c.sample_rate == cfg_.source_rate && (c.frames == 0 || c.fps > 0) &&
                (!c.has_video || c.video.size() == n * fb) && c.rig.size() == n * nc;  // (decode_chunk checked)
  if (usable) {
    frames.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      Frame& f = frames[i];
      f.clock = c.clock + static_cast<std::int64_t>(i) * c.sample_rate / c.fps;
      f.utterance = c.utterance;
      f.width = c.width;
      f.height = c.height;
      f.has_video = c.has_video;
      if (c.has_video)
        f.rgb.assign(c.video.begin() + static_cast<std::ptrdiff_t>(i * fb),
                     c.video.begin() + static_cast<std::ptrdiff_t>((i + 1) * fb));
      f.controls = static_cast<int>(nc);
      f.rig_version = c.rig_version;
      f.rig.assign(c.rig.begin() + static_cast<std::ptrdiff_t>(i * nc), c.rig.begin() + static_cast<std::ptrdiff_t>((i + 1) * nc));
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (!usable) {
    ++stats_.ignored;
    return false;
  }
  ++stats_.chunks;
  const std::int64_t id = c.utterance;
  if (id <= cut_) {
    ++stats_.ignored;
    return false;
  }
  if (id <= finished_) {  // that utterance is over here already
    ++stats_.late_chunks;
    return false;
  }
  Utterance* u = find(id);
  if (!u) {
    if (!utts_.empty() && id < utts_.back().id) {  // older than one buffered: it was superseded here
      ++stats_.late_chunks;
      return false;
    }
    if (utts_.size() >= kMaxUtterances) {  // nobody plays them: keep memory bounded
      ++stats_.overflow_chunks;
      return false;
    }
    // A newer utterance: the server superseded those that did not end normally.
    std::vector<std::int64_t> superseded;
    for (const Utterance& old : utts_)
      if (!(old.eou && !old.interrupted) && !old.fading) superseded.push_back(old.id);
    for (std::int64_t old : superseded)
      if (Utterance* o = find(old)) drop(*o);
    Utterance fresh;
    fresh.id = id;
    utts_.push_back(std::move(fresh));
    u = &utts_.back();
    newest_ = std::max(newest_, id);
  }
  if (u->fading) {  // being dropped already
    ++stats_.ignored;
    return false;
  }
  if (c.samples > 0 && u->started && c.clock + c.samples <= clock_locked()) {
    ++stats_.late_chunks;
    return false;
  }
  if (c.samples > 0 && u->audio.count(c.clock)) {  // a duplicate
    ++stats_.ignored;
    return false;
  }
  // Bounded queue: whole chunks beyond max_queued_seconds (audio, or frames not yet due) are dropped. Frames not yet
  // due are never dropped on their own: that would freeze the face while its voice plays.
  const std::size_t due = prune_due_frames();
  const std::int64_t waiting_frames = static_cast<std::int64_t>(frames_.size() - (due > 0 ? 1 : 0));
  if ((c.samples > 0 && queued_samples() + c.samples > max_queued_samples_) ||
      (c.frames > 0 && waiting_frames + c.frames > static_cast<std::int64_t>(cfg_.max_queued_seconds) * c.fps)) {
    ++stats_.overflow_chunks;
    if (c.eou && !u->eou) {  // its line still ends (interrupted) where its accepted audio ends
      u->eou = u->interrupted = true;
      u->end_clock = u->audio.empty() ? (u->started ? feed_clock_ : c.clock)
                                      : u->audio.rbegin()->first + static_cast<std::int64_t>(u->audio.rbegin()->second.size());
      if (u->started) u->end_clock = std::max(u->end_clock, feed_clock_);
    }
    return false;
  }
  if (u->next_seq >= 0 && c.seq > u->next_seq) stats_.lost += c.seq - u->next_seq;
  u->next_seq = std::max(u->next_seq, c.seq + 1);
  if (c.samples > 0) {
    u->audio.emplace(c.clock, c.pcm);
    u->buffered += c.samples;
  }
  if (c.eou) {
    u->eou = true;
    u->interrupted = c.interrupted;
    u->end_clock = c.clock + c.samples;
  }
  for (Frame& f : frames) {  // keep frames_ ordered by (utterance, clock)
    auto pos = frames_.end();
    while (pos != frames_.begin()) {
      auto prev = std::prev(pos);
      if (prev->utterance < f.utterance || (prev->utterance == f.utterance && prev->clock <= f.clock)) break;
      pos = prev;
    }
    frames_.insert(pos, std::move(f));
  }
  return true;
}

Player::Utterance* Player::find(std::int64_t id) {
  for (Utterance& u : utts_)
    if (u.id == id) return &u;
  return nullptr;
}

std::int64_t Player::end_of(const Utterance& u) const {
  std::int64_t end = u.eou ? u.end_clock : kNever;
  if (u.fading) end = std::min(end, u.fade_end);
  return end;
}

std::int64_t Player::clock_locked() const {
  if (!utts_.empty() && utts_.front().started) return c0_ + rs_.position();
  return clock_;
}

std::int64_t Player::audio_clock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return clock_locked();
}

void Player::emit(const PlayerEvent& e) {
  if (events_.size() >= kMaxEvents) events_.pop_front();
  events_.push_back(e);
}

void Player::ended(Utterance& u, bool interrupted) {
  if (u.ended_event) return;
  u.ended_event = true;
  emit(PlayerEvent{PlayerEvent::Type::UtteranceEnded, u.id, interrupted});
}

std::int64_t Player::queued_samples() const {
  std::int64_t n = 0;
  for (const Utterance& u : utts_) {
    if (u.fading) continue;
    for (const auto& kv : u.audio) {
      const std::int64_t end = kv.first + static_cast<std::int64_t>(kv.second.size());
      n += std::max<std::int64_t>(0, end - (u.started ? std::max(kv.first, feed_clock_) : kv.first));
    }
  }
  if (!utts_.empty() && utts_.front().started) n += rs_.pushed() - rs_.position();  // in the resampler
  return n;
}

void Player::remove_frames(std::int64_t utterance, std::int64_t after_clock) {
  frames_.erase(std::remove_if(frames_.begin(), frames_.end(),
                               [&](const Frame& f) { return f.utterance == utterance && f.clock > after_clock; }),
                frames_.end());
}

void Player::drop(Utterance& u) {
  ended(u, true);
  if (u.started) {
    // Playing: its audio stops fade_ms from now, or sooner where its buffered audio runs out (what is in the
    // resampler already included), and the output fades to silence over what is left of it: a gain ramp at the
    // output, so the cut is smooth wherever it falls (also when its last samples were fed already).
    const std::int64_t now = c0_ + rs_.position();
    const std::int64_t limit = std::max(feed_clock_, now + fade_samples_);
    std::int64_t c = feed_clock_;
    while (c < limit) {  // audio buffered contiguously from the feed point on
      auto next = u.audio.upper_bound(c);
      if (next == u.audio.begin()) break;
      auto cur = std::prev(next);
      const std::int64_t cur_end = cur->first + static_cast<std::int64_t>(cur->second.size());
      if (c >= cur_end) break;
      c = std::min(cur_end, limit);
    }
    u.fading = true;
    u.fade_end = c;
    u.fade_total = u.fade_left = std::max<std::int64_t>(1, rs_.outputs_before(end_of(u) - c0_));
    remove_frames(u.id, clock_locked());
    return;
  }
  remove_frames(u.id, std::numeric_limits<std::int64_t>::min());
  finished_ = std::max(finished_, u.id);
  const std::int64_t id = u.id;
  utts_.erase(std::remove_if(utts_.begin(), utts_.end(), [&](const Utterance& x) { return x.id == id; }), utts_.end());
}

void Player::cut(std::int64_t utterance) {
  std::lock_guard<std::mutex> lock(mu_);
  // Not seen on the stream yet (its chunks may still come): it ends now for the caller, after the older ones.
  const bool unseen = utterance > newest_ && utterance > finished_ && utterance > cut_;
  cut_ = std::max(cut_, utterance);
  std::vector<std::int64_t> ids;
  for (const Utterance& u : utts_)
    if (u.id <= utterance) ids.push_back(u.id);
  for (std::int64_t id : ids)
    if (Utterance* u = find(id)) {
      if (u->fading) continue;
      drop(*u);
    }
  if (unseen) emit(PlayerEvent{PlayerEvent::Type::UtteranceEnded, utterance, true});
}

void Player::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  // Every line that has begun and not ended (playing, queued, prebuffering) ends now, so nobody waits on it forever.
  for (Utterance& u : utts_) ended(u, true);
  utts_.clear();
  frames_.clear();
  cut_ = finished_ = newest_ = 0;
  clock_ = c0_ = feed_clock_ = 0;
  finish_clock_ = since_finish_ = 0;
  rs_.reset();
}

Player::Utterance* Player::ensure_playing() {
  while (!utts_.empty()) {
    Utterance& u = utts_.front();
    if (u.started) return &u;
    if (!(u.eou || u.buffered >= std::max<std::int64_t>(prebuffer_samples_, 1))) return nullptr;  // prebuffering
    if (u.audio.empty()) {  // nothing to play (an end marker alone): it is over
      ended(u, u.interrupted);
      finished_ = std::max(finished_, u.id);
      utts_.pop_front();
      continue;
    }
    u.started = true;
    c0_ = feed_clock_ = u.audio.begin()->first;
    rs_.reset();
    emit(PlayerEvent{PlayerEvent::Type::UtteranceStarted, u.id, false});
    return &u;
  }
  return nullptr;
}

void Player::finish_front(std::size_t produced) {
  Utterance& u = utts_.front();
  ended(u, u.interrupted || u.fading);
  clock_ = std::min(end_of(u), c0_ + rs_.position());
  finish_clock_ = clock_;
  since_finish_ = -static_cast<std::int64_t>(produced);  // counted from here (read_audio adds the whole block)
  finished_ = std::max(finished_, u.id);
  utts_.pop_front();
}

std::size_t Player::feed(Utterance& u, std::size_t need) {
  const std::int64_t end = end_of(u);
  std::size_t pushed = 0;
  while (pushed < need) {
    const std::int64_t c = feed_clock_;
    std::int64_t n = 0;
    const float* src = nullptr;  // nullptr: silence
    if (c >= end) {
      n = static_cast<std::int64_t>(need - pushed);  // past the end: silence lets the last outputs out
    } else {
      auto next = u.audio.upper_bound(c);
      if (next != u.audio.begin()) {
        auto cur = std::prev(next);
        std::int64_t cur_end = cur->first + static_cast<std::int64_t>(cur->second.size());
        if (c < cur_end) {
          n = cur_end - c;
          src = cur->second.data() + (c - cur->first);
        }
      }
      if (!src) {  // in a gap: silence up to the next chunk (or the end), or nothing when none is known
        std::int64_t until = next != u.audio.end() ? next->first : end;
        if (until == kNever) break;  // underrun
        n = until - c;
      }
      n = std::min(n, end - c);
    }
    n = std::min<std::int64_t>(n, static_cast<std::int64_t>(need - pushed));
    scratch_.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      scratch_[static_cast<std::size_t>(i)] = src ? src[i] : 0.0f;
    }
    rs_.push(scratch_.data(), scratch_.size());
    feed_clock_ += n;
    pushed += static_cast<std::size_t>(n);
  }
  // Forget chunks that are fully fed.
  while (!u.audio.empty()) {
    auto first = u.audio.begin();
    if (first->first + static_cast<std::int64_t>(first->second.size()) > feed_clock_) break;
    u.audio.erase(first);
  }
  return pushed;
}

int Player::read_audio(float* out, int frames, int channels) {
  if (frames <= 0) return 0;
  if (channels <= 0) throw std::invalid_argument("read_audio: channels must be >= 1");
  std::lock_guard<std::mutex> lock(mu_);
  mono_.assign(static_cast<std::size_t>(frames), 0.0f);
  std::size_t produced = 0;
  while (produced < static_cast<std::size_t>(frames)) {
    Utterance* u = ensure_playing();
    if (!u) break;  // nothing to play: silence, the clock holds
    std::size_t want = static_cast<std::size_t>(frames) - produced;
    const std::int64_t end = end_of(*u);
    if (end != kNever) {
      std::int64_t left = rs_.outputs_before(end - c0_);
      if (left <= 0) {
        finish_front(produced);
        continue;
      }
      want = std::min<std::size_t>(want, static_cast<std::size_t>(left));
    }
    std::size_t need = rs_.input_needed(want);
    if (need > 0) feed(*u, need);
    std::size_t n = rs_.pull(mono_.data() + produced, want);
    if (u->fading)  // the cut line's last outputs: a gain ramp down to silence
      for (std::size_t i = produced; i < produced + n; ++i) {
        mono_[i] = u->fade_left > 0 ? mono_[i] * static_cast<float>(u->fade_left) / static_cast<float>(u->fade_total + 1)
                                    : 0.0f;
        if (u->fade_left > 0) --u->fade_left;
      }
    produced += n;
    if (n == 0) {  // underrun mid-utterance
      if (!u->starved) ++stats_.underruns;
      u->starved = true;
      break;
    }
    u->starved = false;
  }
  since_finish_ += frames;
  for (int i = 0; i < frames; ++i)
    for (int ch = 0; ch < channels; ++ch) out[static_cast<std::size_t>(i) * channels + ch] = mono_[static_cast<std::size_t>(i)];
  return static_cast<int>(produced);
}

std::size_t Player::prune_due_frames() {
  // A frame is due once its audio is heard: output_latency_ms after it left read_audio. Frames of a line that has
  // finished are timed from its end on the outputs read since (silence or the next line).
  const Utterance* front = utts_.empty() ? nullptr : &utts_.front();
  const std::int64_t playing = front && front->started ? c0_ + rs_.position() - latency_samples_ : kNever;
  const std::int64_t after_finish =
      finish_clock_ + since_finish_ * cfg_.source_rate / cfg_.output_rate - latency_samples_;
  std::size_t due = 0;
  for (const Frame& f : frames_) {
    const bool over = !front || f.utterance < front->id;  // its line finished (queued ids ascend)
    const bool now_due = over ? f.clock <= after_finish : (playing != kNever && f.utterance == front->id && f.clock <= playing);
    if (!now_due) break;
    ++due;
  }
  if (due > 1) {  // never shown: a later due frame replaces them
    stats_.dropped_frames += static_cast<std::int64_t>(due - 1);
    frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(due - 1));
    due = 1;
  }
  return due;
}

std::optional<Frame> Player::take_frame() {
  std::lock_guard<std::mutex> lock(mu_);
  if (prune_due_frames() == 0) return std::nullopt;
  Frame f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

std::optional<PlayerEvent> Player::poll_event() {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.empty()) return std::nullopt;
  PlayerEvent e = events_.front();
  events_.pop_front();
  return e;
}

PlayerStats Player::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::int64_t Player::playing_utterance() const {
  std::lock_guard<std::mutex> lock(mu_);
  return (!utts_.empty() && utts_.front().started) ? utts_.front().id : 0;
}

std::int64_t Player::newest_utterance() const {
  std::lock_guard<std::mutex> lock(mu_);
  return newest_;
}

double Player::buffered_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t samples = 0;
  for (const Utterance& u : utts_) {
    if (u.fading) continue;
    for (const auto& kv : u.audio) {
      std::int64_t from = u.started ? std::max(kv.first, feed_clock_) : kv.first;
      samples += std::max<std::int64_t>(0, kv.first + static_cast<std::int64_t>(kv.second.size()) - from);
    }
  }
  return 1000.0 * static_cast<double>(samples) / cfg_.source_rate;
}

}  // namespace mfruntime
