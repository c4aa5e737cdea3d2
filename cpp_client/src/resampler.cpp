#include "mfruntime/resampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace mfruntime {

namespace {
constexpr double kPi = 3.14159265358979323846;

double blackman(double u) {  // u in [-1, 1]
  return 0.42 + 0.5 * std::cos(kPi * u) + 0.08 * std::cos(2.0 * kPi * u);
}
}  // namespace

Resampler::Resampler(int in_rate, int out_rate, int half_taps)
    : in_rate_(in_rate), out_rate_(out_rate), half_(half_taps), history_(half_taps - 1) {
  if (in_rate < 1000 || in_rate > 384000 || out_rate < 1000 || out_rate > 384000)
    throw std::invalid_argument("resampler rates must be 1000-384000 Hz, got " + std::to_string(in_rate) + " -> " +
                                std::to_string(out_rate));
  if (half_taps < 2 || half_taps > 64)
    throw std::invalid_argument("resampler half_taps must be 2-64, got " + std::to_string(half_taps));
  std::int64_t g = std::gcd(static_cast<std::int64_t>(in_rate), static_cast<std::int64_t>(out_rate));
  L_ = out_rate / g;
  M_ = in_rate / g;
  if (L_ > 16384)
    throw std::invalid_argument("output rate " + std::to_string(out_rate) + " Hz needs " + std::to_string(L_) +
                                " filter phases from " + std::to_string(in_rate) +
                                " Hz (at most 16384): use a common rate such as 44100 or 48000");
  // Cut-off as a fraction of the input Nyquist rate: a little under the lower Nyquist rate.
  const double cutoff = 0.92 * std::min(1.0, static_cast<double>(L_) / static_cast<double>(M_));
  const int taps = 2 * half_;
  table_.resize(static_cast<std::size_t>(L_) * taps);
  for (std::int64_t phase = 0; phase < L_; ++phase) {
    float* row = &table_[static_cast<std::size_t>(phase) * taps];
    double sum = 0.0;
    for (int t = 0; t < taps; ++t) {
      // Input j = pos − half + 1 + t lies x = (pos + phase/L) − j = phase/L + half − 1 − t from the output.
      double x = static_cast<double>(phase) / static_cast<double>(L_) + half_ - 1 - t;
      double u = x / half_;
      double w = std::fabs(u) < 1.0 ? blackman(u) : 0.0;
      double arg = kPi * cutoff * x;
      double s = std::fabs(x) < 1e-12 ? 1.0 : std::sin(arg) / arg;
      double h = cutoff * s * w;
      row[t] = static_cast<float>(h);
      sum += h;
    }
    for (int t = 0; t < taps; ++t) row[t] = static_cast<float>(row[t] / sum);  // unit gain at DC for every phase
  }
  reset();
}

void Resampler::reset() {
  buf_.assign(static_cast<std::size_t>(history_), 0.0f);
  base_ = 0;
  pos_ = 0;
  frac_ = 0;
  produced_ = 0;
}

void Resampler::push(const float* in, std::size_t count) { buf_.insert(buf_.end(), in, in + count); }

void Resampler::push_silence(std::size_t count) { buf_.insert(buf_.end(), count, 0.0f); }

std::size_t Resampler::input_needed(std::size_t outputs) const {
  if (outputs == 0) return 0;
  // The last of those outputs sits at (pos·L + frac + (outputs−1)·M) / L and needs input floor(that) + half.
  std::int64_t last = (pos_ * L_ + frac_ + static_cast<std::int64_t>(outputs - 1) * M_) / L_;
  std::int64_t need = last + half_ - pushed() + 1;
  return need > 0 ? static_cast<std::size_t>(need) : 0;
}

std::int64_t Resampler::outputs_before(std::int64_t input_index) const {
  std::int64_t span = input_index * L_ - (pos_ * L_ + frac_);
  if (span <= 0) return 0;
  return (span + M_ - 1) / M_;
}

float Resampler::output_at() const {
  const float* row = &table_[static_cast<std::size_t>(frac_) * 2 * half_];
  // First tap: input pos − half + 1, stored at buf_[history_ + that − base_].
  const float* x = &buf_[static_cast<std::size_t>(history_ + pos_ - half_ + 1 - base_)];
  float acc = 0.0f;
  for (int t = 0; t < 2 * half_; ++t) acc += row[t] * x[t];
  return acc;
}

std::size_t Resampler::pull(float* out, std::size_t max_out) {
  const std::int64_t have = pushed();
  std::size_t n = 0;
  while (n < max_out && pos_ + half_ < have) {  // the output needs inputs up to pos + half
    out[n++] = output_at();
    frac_ += M_;
    pos_ += frac_ / L_;
    frac_ %= L_;
  }
  produced_ += static_cast<std::int64_t>(n);
  compact();
  return n;
}

void Resampler::compact() {
  // Keep the inputs the next output needs (from pos − half + 1 on); drop older ones in large steps.
  std::int64_t keep_from = pos_ - half_ + 1;  // input index
  std::int64_t drop = keep_from - (base_ - history_);
  if (drop >= 4096) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(drop));
    // buf_[0] is now input keep_from; express it as base_ with the same history_ offset.
    base_ = keep_from + history_;
  }
}

}  // namespace mfruntime
