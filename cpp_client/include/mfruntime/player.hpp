// Playback of one character's stream, engine-free: the network thread pushes chunks, the audio thread pulls
// resampled PCM, the game thread takes the video frame that is due. Every method is thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mfruntime/protocol.hpp"
#include "mfruntime/resampler.hpp"

namespace mfruntime {

struct PlayerConfig {
  std::string character = "default";  // chunks of other characters are ignored
  int output_rate = 48000;            // the engine's audio output rate
  int prebuffer_ms = 80;              // an utterance starts once this much audio is buffered (or its end arrived)
  int source_rate = 16000;            // the stream's sample rate (the clock's unit)
  int fade_ms = 5;                    // fade-out when buffered audio is dropped (cut, superseded)
  /// How long the engine takes to play what read_audio returned (its output buffers): frames are shown that much
  /// later, when their audio is heard. 0: frames are due when their audio leaves read_audio.
  int output_latency_ms = 0;
  /// Most audio (with its frames) queued ahead of playback; whole chunks beyond it are dropped and counted
  /// (overflow_chunks). Only reached when the audio is not being played (the server runs ahead of real time).
  int max_queued_seconds = 120;
};

/// A frame that is due: its clock (source samples), its RGB bytes (height × width × 3) and its rig values (the
/// chunk's rig row of the same frame index). A rig-only chunk's frames have no pixels (has_video false, rgb empty);
/// a chunk without a rig gives frames with controls 0 and rig empty.
struct Frame {
  std::int64_t clock = 0;
  std::int64_t utterance = 0;
  int width = 0, height = 0;
  bool has_video = true;
  std::vector<std::uint8_t> rgb;
  int controls = 0;                // rig values (rig.hpp names them; rig_version says which list)
  int rig_version = kRigVersion;
  std::vector<float> rig;
};

struct PlayerEvent {
  enum class Type { UtteranceStarted, UtteranceEnded };
  Type type = Type::UtteranceStarted;
  std::int64_t utterance = 0;
  bool interrupted = false;  // Ended only: cut locally, superseded, or ended early by the server
};

struct PlayerStats {
  std::int64_t chunks = 0;          // chunks of this character pushed
  std::int64_t late_chunks = 0;     // dropped: entirely before the play position, or of an utterance already over
  std::int64_t dropped_frames = 0;  // frames that were due but replaced by a later one before take_frame
  std::int64_t underruns = 0;       // times playback ran out of audio mid-utterance
  std::int64_t lost = 0;            // chunks missing from seq gaps
  std::int64_t ignored = 0;         // other character, cut utterance, duplicate, or unusable rates
  std::int64_t overflow_chunks = 0; // dropped: the queue already held max_queued_seconds (nobody plays the audio)
};

/// Rules (the C# client implements the same):
///  - Everything is keyed on the integer sample clock at the source rate; frame i of a chunk has the clock
///    chunk.clock + i·sample_rate/fps.
///  - An utterance starts once prebuffer_ms of it is buffered or its end (eou) has arrived; until then
///    read_audio gives silence and the clock holds. It ends (event) when playback passes its eou chunk.
///  - A chunk of a newer utterance supersedes buffered ones that did not end normally (no eou yet, or an
///    interrupted eou): they end (interrupted) and are dropped with their frames. An utterance whose eou arrived
///    without `interrupted` plays to its end and the newer one follows it.
///  - A cut or superseded line that is playing fades out at the output: a gain ramp over fade_ms, or over what is
///    left of it when less is buffered (its samples already in the resampler included), then silence until the
///    resampler has passed its last sample. So there is no click, wherever in a chunk it is cut.
///  - Underrun mid-utterance: silence, the clock holds. A seq gap (lost chunk): silence up to the next chunk's
///    clock, the clock runs on and the frame holds.
///  - take_frame gives the latest frame that is due, i.e. heard: clock ≤ audio_clock − output_latency_ms (a
///    finished line's last frames wait for the silence after it to cover the latency); earlier unshown ones are
///    dropped, never shown out of order. Frames not yet due are never dropped. A frame carries its pixels and its
///    rig values together, so the rig follows the same audio clock; rig-only chunks (no pixels) play the same way.
///  - Bounded memory when nobody plays: audio queued ahead (with its frames) is capped at max_queued_seconds,
///    whole chunks beyond it are dropped (overflow_chunks; an eou in one still ends its line, interrupted);
///    at most 1024 utterances are queued; unpolled events beyond 1024 drop the oldest; due frames that a later
///    due frame replaces are dropped at push too (as take_frame would).
///  - Events: UtteranceStarted when its first sample plays; UtteranceEnded once per line, when playback passes
///    its end, or when it is cut, superseded or reset (then also for a line never heard, prebuffering or queued,
///    so a caller waiting on an id always sees its end).
class Player {
 public:
  explicit Player(PlayerConfig cfg = {});

  /// Network thread: add a decoded chunk. Returns false when it was ignored or dropped (see stats()).
  bool push(const StreamChunk& chunk);

  /// Audio thread: fill `frames` interleaved frames of `channels` channels at the output rate (mono copied to
  /// every channel). Returns how many frames carried utterance audio; the rest is silence.
  int read_audio(float* out, int frames, int channels);

  /// The sample clock (source rate) of the next sample to be played.
  std::int64_t audio_clock() const;

  /// Game thread: the newest frame that is due, if a new one is: its pixels (unless rig-only) and its rig values.
  std::optional<Frame> take_frame();

  std::optional<PlayerEvent> poll_event();

  /// Local interrupt: drop (fade out) everything of utterances ≤ `utterance`, ignore their later chunks, and emit
  /// UtteranceEnded(interrupted) for each one not ended yet (also for `utterance` itself when no chunk of it came yet).
  void cut(std::int64_t utterance);

  /// After a reconnect to a restarted server (clocks and ids start again): drop everything, forget ids.
  /// Emits UtteranceEnded(interrupted) for utterances still open. Stats are kept.
  void reset();

  PlayerStats stats() const;
  const PlayerConfig& config() const { return cfg_; }
  /// The utterance being played (0 when none).
  std::int64_t playing_utterance() const;
  /// Newest utterance id pushed (0 when none since construction or reset).
  std::int64_t newest_utterance() const;
  /// Milliseconds of audio buffered and not yet played.
  double buffered_ms() const;

 private:
  struct Utterance {
    std::int64_t id = 0;
    std::map<std::int64_t, std::vector<float>> audio;  // chunk clock → samples
    std::int64_t buffered = 0;                         // samples received
    std::int64_t next_seq = -1;                        // next seq expected (-1: none seen)
    bool eou = false, interrupted = false;
    std::int64_t end_clock = 0;                        // with eou: the clock just after its last sample
    bool started = false, ended_event = false, starved = false;
    bool fading = false;
    std::int64_t fade_end = 0;                         // fading: the clock where its audio stops
    std::int64_t fade_total = 1, fade_left = 0;        // fading: the output gain ramp (outputs)
  };

  std::int64_t end_of(const Utterance& u) const;  // where playback of u stops (INT64_MAX: not known yet)
  std::int64_t clock_locked() const;
  Utterance* find(std::int64_t id);
  Utterance* ensure_playing();
  std::size_t feed(Utterance& u, std::size_t need);
  void finish_front(std::size_t produced);
  void drop(Utterance& u);  // fade out (playing) or remove (waiting); emits Ended(interrupted)
  void remove_frames(std::int64_t utterance, std::int64_t after_clock);
  void ended(Utterance& u, bool interrupted);
  void emit(const PlayerEvent& e);
  std::int64_t queued_samples() const;  // source samples queued and not yet played (in the resampler too)
  std::size_t prune_due_frames();       // drops due frames a later due one replaces; returns how many are due

  PlayerConfig cfg_;
  mutable std::mutex mu_;
  Resampler rs_;
  std::deque<Utterance> utts_;  // ascending ids; the front one plays (once started)
  std::deque<Frame> frames_;    // not yet shown, ordered by (utterance, clock)
  std::deque<PlayerEvent> events_;
  std::int64_t cut_ = 0;        // utterances ≤ this are cut locally
  std::int64_t finished_ = 0;   // utterances ≤ this are over (played, superseded or cut)
  std::int64_t newest_ = 0;
  std::int64_t clock_ = 0;      // held clock while nothing plays
  std::int64_t c0_ = 0;         // clock of resampler input 0 of the playing utterance
  std::int64_t feed_clock_ = 0; // clock of the next sample to push into the resampler
  std::int64_t finish_clock_ = 0;  // the clock where the last line finished
  std::int64_t since_finish_ = 0;  // outputs read since then
  std::int64_t prebuffer_samples_, fade_samples_, latency_samples_, max_queued_samples_;
  PlayerStats stats_;
  std::vector<float> mono_, scratch_;
};

}  // namespace mfruntime
