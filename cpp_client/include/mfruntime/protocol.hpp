// The wire format of `mf serve`, protocol version 3 (docs/PROTOCOL.md): stream chunks and control messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mfruntime/errors.hpp"
#include "mfruntime/value.hpp"

namespace mfruntime {

constexpr int kProtocolVersion = 3;
/// The version of the rig control list this client knows (rig.hpp: rig_controls()).
constexpr int kRigVersion = 1;

/// A view of one part of a multipart message.
struct ByteView {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

/// One stream message: 160 ms of a character's video, audio and rig frames (or an end marker), checked and decoded.
struct StreamChunk {
  std::string character;
  std::int64_t utterance = 0;
  std::int64_t seq = 0;
  double pts = 0.0;          // seconds on the character's stream clock
  std::int64_t clock = 0;    // llround(pts * sample_rate): the same time as an integer sample clock
  int width = 0, height = 0;
  int frames = 0;            // video frames (0 in an end marker); also counted in rig-only chunks
  int fps = 0;
  int sample_rate = 0;
  int samples = 0;           // PCM samples (0 in an end marker)
  bool eou = false;          // end of utterance
  bool interrupted = false;  // the utterance ended early
  bool has_video = true;     // the header's `video`: false in rig-only mode (`video` is then empty)
  int controls = 0;          // rig values per frame (0: no rig part)
  int rig_version = kRigVersion;    // the control list that names the rig values (rig.hpp)
  int steps = 0;  // denoising steps the chunk was made with (0: none — an end marker, an idle chunk without the model)
  std::vector<std::uint8_t> video;  // frames × height × width × 3, RGB; empty when !has_video
  std::vector<float> pcm;           // samples, mono
  std::vector<float> rig;           // frames × controls, row-major (frame, control); frame i is due with video frame i

  bool is_end_marker() const { return frames == 0 && samples == 0; }
  bool has_rig() const { return controls > 0; }
  /// Bytes of one video frame (height × width × 3).
  std::size_t frame_bytes() const { return static_cast<std::size_t>(width) * height * 3; }
  /// The `controls` rig values of frame i (valid when has_rig()).
  const float* rig_frame(int i) const { return rig.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(controls); }
};

/// The five parts [topic, header, video, pcm, rig] → a StreamChunk. Throws ProtocolError when the message breaks
/// a rule a client must check: not five parts (a version-1 message has four); header not a map or another `v`; a
/// header field missing or of the wrong type (an integer pts is accepted); topic ≠ character; sizes out of range
/// (width, height ≤ 8192, frames ≤ 1000, fps 1–1000, sample_rate 1–384000, samples ≤ 16 Mi, controls ≤ 4096:
/// their products cannot overflow; rig_version ≥ 0); pts not finite or negative; video, pcm or rig length ≠ header
/// (video: frames × height × width × 3, or 0 without `video`; pcm: samples × 4; rig: frames × controls × 4).
StreamChunk decode_chunk(const ByteView* parts, std::size_t count);
StreamChunk decode_chunk(const std::vector<Bytes>& parts);

/// The inverse of decode_chunk (for tests and tools): the five parts of a stream message.
std::vector<Bytes> encode_chunk(const StreamChunk& chunk);

// --- control requests: each returns one msgpack map {v, op, id, ...} ---------------------------------
Bytes encode_ping(std::int64_t id);
/// voice "" and steps 0 leave those fields out (the server's defaults).
Bytes encode_say(std::int64_t id, const std::string& character, const std::string& text,
                 const std::string& voice = "", int steps = 0);
/// pcm: mono float samples at sample_rate (sent as float32 little-endian).
Bytes encode_drive(std::int64_t id, const std::string& character, const float* pcm, std::size_t count,
                   int sample_rate, int steps = 0);
Bytes encode_interrupt(std::int64_t id, const std::string& character);
/// Raw RGB pixels, row-major, width × height × 3 bytes.
Bytes encode_set_character_rgb(std::int64_t id, const std::string& character, const Bytes& rgb, int width,
                               int height, const std::string& voice = "", const std::string& renderer = "",
                               int size = 0);
/// An encoded image file (PNG, JPEG, ...). renderer: "model", "portrait" or "auto" (empty: not sent, the server's
/// default, auto); size > 0: a portrait's long side in px (docs/PROTOCOL.md).
Bytes encode_set_character_image(std::int64_t id, const std::string& character, const Bytes& encoded,
                                 const std::string& voice = "", const std::string& renderer = "", int size = 0);
/// One of the server's built-in faces.
Bytes encode_set_character_seed(std::int64_t id, const std::string& character, std::int64_t face_seed,
                                const std::string& voice = "");
/// min_steps > 0 also sets the floor a chunk's steps may drop to when the stream would fall behind (0: not sent).
Bytes encode_set_steps(std::int64_t id, const std::string& character, int steps, int min_steps = 0);
/// What the character's chunks carry from its next utterance on; a field left empty is not sent (unchanged).
/// video = false is rig-only mode (no video decoding on the server, empty video parts).
Bytes encode_set_outputs(std::int64_t id, const std::string& character, std::optional<bool> video,
                         std::optional<bool> rig = std::nullopt);
/// Listening between lines: on = true streams idle chunks (silence, closed mouth, blinks) whenever the character
/// has nothing to say; a say takes over at once.
Bytes encode_idle(std::int64_t id, const std::string& character, bool on);
/// character "" asks for every character's stats.
Bytes encode_stats(std::int64_t id, const std::string& character = "");
Bytes encode_state(std::int64_t id, const std::string& character);

/// The ops of protocol version 3.
const std::vector<std::string>& protocol_ops();

/// A request's bytes → its map, checked as the server checks it (version, known op, field types). Throws
/// ProtocolError ("not a msgpack message", "must be a msgpack map", "unknown op", ...).
Value decode_request(const std::uint8_t* data, std::size_t size);
inline Value decode_request(const Bytes& b) { return decode_request(b.data(), b.size()); }

/// A reply's bytes → its map (must be a map with a string `status`). Does not look at the status.
Value decode_reply(const std::uint8_t* data, std::size_t size);
inline Value decode_reply(const Bytes& b) { return decode_reply(b.data(), b.size()); }

/// Throws ServerError with the server's text when the reply's status is not "ok".
void throw_if_error(const Value& reply);

}  // namespace mfruntime
