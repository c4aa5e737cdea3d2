// A streaming windowed-sinc resampler with exact integer position arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mfruntime {

/// Converts a mono stream from in_rate to out_rate. With ratio L/M = out_rate/in_rate (reduced), output sample k
/// sits at input position k·M/L, kept as an integer index plus a phase numerator (0…L−1), so the output never
/// drifts and feeding the input in any chunking gives bit-identical output. Each output is a Blackman-windowed
/// sinc over `half_taps` inputs each side (a precomputed table of L phases, each normalised to unit DC gain),
/// cut off below the lower of the two Nyquist rates. Input before the first sample is taken as silence.
class Resampler {
 public:
  Resampler(int in_rate, int out_rate, int half_taps = 16);

  int in_rate() const { return in_rate_; }
  int out_rate() const { return out_rate_; }
  int half_taps() const { return half_; }

  /// Append input samples.
  void push(const float* in, std::size_t count);
  /// Append `count` zeros (e.g. to flush the last outputs at the end of a stream).
  void push_silence(std::size_t count);
  /// Write up to `max_out` outputs whose inputs have all arrived; returns how many were written.
  std::size_t pull(float* out, std::size_t max_out);

  /// Inputs that must still be pushed before `outputs` more can be pulled (0 when already available).
  std::size_t input_needed(std::size_t outputs) const;
  /// How many outputs lie before input index `input_index` (counting from the next output).
  std::int64_t outputs_before(std::int64_t input_index) const;
  /// Integer part of the next output's input position (inputs counted from 0 since construction/reset).
  std::int64_t position() const { return pos_; }
  /// Inputs pushed so far.
  std::int64_t pushed() const { return base_ + static_cast<std::int64_t>(buf_.size()) - history_; }
  /// Outputs pulled so far.
  std::int64_t produced() const { return produced_; }

  /// Start again from silence at input index 0.
  void reset();

 private:
  float output_at() const;
  void compact();

  int in_rate_, out_rate_, half_;
  std::int64_t L_, M_;            // out/in = L/M, reduced
  std::vector<float> table_;      // L_ phases × 2·half_ taps
  std::vector<float> buf_;        // inputs from index base_ − history_ on
  std::int64_t history_;          // zeros before input 0 (= half_ − 1)
  std::int64_t base_ = 0;         // input index of buf_[history_]
  std::int64_t pos_ = 0;          // next output position: pos_ + frac_/L_
  std::int64_t frac_ = 0;
  std::int64_t produced_ = 0;
};

}  // namespace mfruntime
