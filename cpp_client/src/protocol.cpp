// Stream chunk decoding (with every check docs/PROTOCOL.md asks of a client) and control message codecs.
#include "mfruntime/protocol.hpp"

#include <cmath>
#include <cstring>
#include <limits>

namespace mfruntime {

namespace {

constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxRequestBytes = 32u * 1024u * 1024u;
// Largest header values a client accepts (as the C# client): far above any real stream.
constexpr std::int64_t kMaxSide = 8192, kMaxFrames = 1000, kMaxFps = 1000, kMaxSampleRate = 384000,
                       kMaxSamples = 16 * 1024 * 1024, kMaxControls = 4096,
                       kMaxRigVersion = std::numeric_limits<int>::max(), kMaxSteps = 1000;
constexpr std::size_t kStreamParts = 5;

const Value& header_field(const Value& header, const char* name, Value::Type want) {
  const Value* v = header.find(name);
  if (!v) throw ProtocolError(std::string("stream header field '") + name + "' is missing");
  bool ok = v->type() == want || (want == Value::Type::Float && v->type() == Value::Type::Int);
  if (!ok)
    throw ProtocolError(std::string("stream header field '") + name + "' must be " + Value::type_name(want) +
                        ", got " + v->type_name() + " " + v->to_string());
  return *v;
}

// A size field within 0…limit (far above any real stream, so the sizes made from them cannot overflow).
int size_field(const Value& header, const char* name, std::int64_t limit) {
  std::int64_t n = header_field(header, name, Value::Type::Int).as_int();
  if (n < 0) throw ProtocolError(std::string("stream header field '") + name + "' is negative (" + std::to_string(n) + ")");
  if (n > limit)
    throw ProtocolError(std::string("stream header field '") + name + "' is out of range: " + std::to_string(n) +
                        " (0-" + std::to_string(limit) + ")");
  return static_cast<int>(n);
}

// a * b, or false when it would pass `limit`.
bool mul_within(std::uint64_t a, std::uint64_t b, std::uint64_t limit, std::uint64_t& out) {
  if (a != 0 && b > limit / a) return false;
  out = a * b;
  return true;
}

float le_float(const std::uint8_t* p) {
  std::uint32_t u = static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
                    (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void put_le_float(std::uint8_t* p, float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  p[0] = static_cast<std::uint8_t>(u);
  p[1] = static_cast<std::uint8_t>(u >> 8);
  p[2] = static_cast<std::uint8_t>(u >> 16);
  p[3] = static_cast<std::uint8_t>(u >> 24);
}

Value request(const char* op, std::int64_t id) {
  return Value::map({{"v", kProtocolVersion}, {"op", op}, {"id", static_cast<long long>(id)}});
}

}  // namespace

StreamChunk decode_chunk(const std::vector<Bytes>& parts) {
  std::vector<ByteView> views;
  views.reserve(parts.size());
  for (const Bytes& p : parts) views.push_back(ByteView{p.data(), p.size()});
  return decode_chunk(views.data(), views.size());
}

StreamChunk decode_chunk(const ByteView* parts, std::size_t count) {
  if (count != kStreamParts)
    throw ProtocolError("a stream message has 5 parts (topic, header, video, pcm, rig), got " + std::to_string(count) +
                        (count == 4 ? " (a protocol version 1 server sends 4: update mf serve)" : ""));
  const ByteView& topic = parts[0];
  const ByteView& head = parts[1];
  const ByteView& video = parts[2];
  const ByteView& pcm = parts[3];
  const ByteView& rig = parts[4];
  if (head.size > kMaxHeaderBytes)
    throw ProtocolError("the stream header is " + std::to_string(head.size) + " bytes, more than the " +
                        std::to_string(kMaxHeaderBytes) + " allowed");
  Value header = unpack_value(head.data, head.size);
  if (!header.is_map()) throw ProtocolError(std::string("the stream header must be a msgpack map, got ") + header.type_name());
  const Value* v = header.find("v");
  if (!v || !v->is_int() || v->as_int() != kProtocolVersion)
    throw ProtocolError("stream protocol version " + (v ? v->to_string() : std::string("(missing)")) +
                        ", this client reads " + std::to_string(kProtocolVersion));

  StreamChunk c;
  c.character = header_field(header, "character", Value::Type::String).as_string();
  c.utterance = header_field(header, "utterance", Value::Type::Int).as_int();
  c.seq = header_field(header, "seq", Value::Type::Int).as_int();
  c.pts = header_field(header, "pts", Value::Type::Float).as_double();
  c.width = size_field(header, "width", kMaxSide);
  c.height = size_field(header, "height", kMaxSide);
  c.frames = size_field(header, "frames", kMaxFrames);
  c.fps = size_field(header, "fps", kMaxFps);
  c.sample_rate = size_field(header, "sample_rate", kMaxSampleRate);
  c.samples = size_field(header, "samples", kMaxSamples);
  if (c.fps == 0 || c.sample_rate == 0)
    throw ProtocolError("stream header: fps and sample_rate must be positive (fps " + std::to_string(c.fps) +
                        ", sample_rate " + std::to_string(c.sample_rate) + ")");
  if (!std::isfinite(c.pts) || c.pts < 0.0)
    throw ProtocolError("stream header field 'pts' must be a finite time >= 0, got " + std::to_string(c.pts));
  if (c.pts * c.sample_rate > 9.0e15)  // beyond exact integer sample clocks in a double
    throw ProtocolError("stream header field 'pts' is too large: " + std::to_string(c.pts));
  c.eou = header_field(header, "eou", Value::Type::Bool).as_bool();
  c.interrupted = header_field(header, "interrupted", Value::Type::Bool).as_bool();
  c.has_video = header_field(header, "video", Value::Type::Bool).as_bool();
  c.controls = size_field(header, "controls", kMaxControls);
  c.rig_version = size_field(header, "rig_version", kMaxRigVersion);
  c.steps = size_field(header, "steps", kMaxSteps);

  std::string topic_text(reinterpret_cast<const char*>(topic.data), topic.size);
  if (topic_text != c.character)
    throw ProtocolError("topic '" + topic_text + "' does not match the header's character '" + c.character + "'");

  std::uint64_t want_video = 0;
  const std::uint64_t limit = std::numeric_limits<std::size_t>::max() / 2;
  if (!mul_within(static_cast<std::uint64_t>(c.frames) * 3, static_cast<std::uint64_t>(c.height), limit, want_video) ||
      !mul_within(want_video, static_cast<std::uint64_t>(c.width), limit, want_video))
    throw ProtocolError("video part: the header's size (" + std::to_string(c.frames) + " frames of " +
                        std::to_string(c.width) + "x" + std::to_string(c.height) + ") is too large");
  if (!c.has_video) want_video = 0;  // rig-only: `frames` counts the chunk's frames, the video part is empty
  if (video.size != want_video)
    throw ProtocolError("video part is " + std::to_string(video.size) + " bytes, the header says " +
                        std::to_string(want_video) +
                        (c.has_video ? " (" + std::to_string(c.frames) + " frames of " + std::to_string(c.width) + "x" +
                                           std::to_string(c.height) + "x3)"
                                     : " (video is false: rig-only)"));
  std::uint64_t want_pcm = static_cast<std::uint64_t>(c.samples) * 4;
  if (pcm.size != want_pcm)
    throw ProtocolError("pcm part is " + std::to_string(pcm.size) + " bytes, the header says " +
                        std::to_string(want_pcm) + " (" + std::to_string(c.samples) + " float32 samples)");
  const std::uint64_t rig_values = static_cast<std::uint64_t>(c.frames) * static_cast<std::uint64_t>(c.controls);
  if (rig.size != rig_values * 4)
    throw ProtocolError("rig part is " + std::to_string(rig.size) + " bytes, the header says " +
                        std::to_string(rig_values * 4) + " (" + std::to_string(c.frames) + " frames of " +
                        std::to_string(c.controls) + " float32 controls)");

  c.clock = std::llround(c.pts * c.sample_rate);
  c.video.assign(video.data, video.data + video.size);
  c.pcm.resize(static_cast<std::size_t>(c.samples));
  for (std::size_t i = 0; i < c.pcm.size(); ++i) c.pcm[i] = le_float(pcm.data + 4 * i);
  c.rig.resize(static_cast<std::size_t>(rig_values));
  for (std::size_t i = 0; i < c.rig.size(); ++i) c.rig[i] = le_float(rig.data + 4 * i);
  return c;
}

std::vector<Bytes> encode_chunk(const StreamChunk& c) {
  Value header = Value::map({{"v", kProtocolVersion},
                             {"character", c.character},
                             {"utterance", static_cast<long long>(c.utterance)},
                             {"seq", static_cast<long long>(c.seq)},
                             {"pts", c.pts},
                             {"width", c.width},
                             {"height", c.height},
                             {"frames", c.frames},
                             {"fps", c.fps},
                             {"sample_rate", c.sample_rate},
                             {"samples", c.samples},
                             {"eou", c.eou},
                             {"interrupted", c.interrupted},
                             {"video", c.has_video},
                             {"controls", c.controls},
                             {"rig_version", c.rig_version},
                             {"steps", c.steps}});
  std::vector<Bytes> parts(kStreamParts);
  parts[0].assign(c.character.begin(), c.character.end());
  parts[1] = pack_value(header);
  if (c.has_video) parts[2] = c.video;
  parts[3].resize(c.pcm.size() * 4);
  for (std::size_t i = 0; i < c.pcm.size(); ++i) put_le_float(parts[3].data() + 4 * i, c.pcm[i]);
  parts[4].resize(c.rig.size() * 4);
  for (std::size_t i = 0; i < c.rig.size(); ++i) put_le_float(parts[4].data() + 4 * i, c.rig[i]);
  return parts;
}

// --- control requests ------------------------------------------------------------------------------

Bytes encode_ping(std::int64_t id) { return pack_value(request("ping", id)); }

Bytes encode_say(std::int64_t id, const std::string& character, const std::string& text, const std::string& voice,
                 int steps) {
  Value r = request("say", id);
  r.set("character", character);
  r.set("text", text);
  if (!voice.empty()) r.set("voice", voice);
  if (steps != 0) r.set("steps", steps);
  return pack_value(r);
}

Bytes encode_drive(std::int64_t id, const std::string& character, const float* pcm, std::size_t count,
                   int sample_rate, int steps) {
  Bytes raw(count * 4);
  for (std::size_t i = 0; i < count; ++i) put_le_float(raw.data() + 4 * i, pcm[i]);
  Value r = request("drive", id);
  r.set("character", character);
  r.set("sample_rate", sample_rate);
  r.set("pcm", std::move(raw));
  if (steps != 0) r.set("steps", steps);
  return pack_value(r);
}

Bytes encode_interrupt(std::int64_t id, const std::string& character) {
  Value r = request("interrupt", id);
  r.set("character", character);
  return pack_value(r);
}

Bytes encode_set_character_rgb(std::int64_t id, const std::string& character, const Bytes& rgb, int width,
                               int height, const std::string& voice, const std::string& renderer, int size) {
  if (width <= 0 || height <= 0 || rgb.size() != static_cast<std::size_t>(width) * height * 3)
    throw std::invalid_argument("set_character: raw RGB must be width x height x 3 bytes (" + std::to_string(width) +
                                "x" + std::to_string(height) + "x3), got " + std::to_string(rgb.size()));
  Value r = request("set_character", id);
  r.set("character", character);
  r.set("width", width);
  r.set("height", height);
  r.set("image", rgb);
  if (!voice.empty()) r.set("voice", voice);
  if (!renderer.empty()) r.set("renderer", renderer);
  if (size > 0) r.set("size", static_cast<long long>(size));
  return pack_value(r);
}

Bytes encode_set_character_image(std::int64_t id, const std::string& character, const Bytes& encoded,
                                 const std::string& voice, const std::string& renderer, int size) {
  if (encoded.empty()) throw std::invalid_argument("set_character: the encoded image is empty");
  Value r = request("set_character", id);
  r.set("character", character);
  r.set("image", encoded);
  if (!voice.empty()) r.set("voice", voice);
  if (!renderer.empty()) r.set("renderer", renderer);
  if (size > 0) r.set("size", static_cast<long long>(size));
  return pack_value(r);
}

Bytes encode_set_character_seed(std::int64_t id, const std::string& character, std::int64_t face_seed,
                                const std::string& voice) {
  Value r = request("set_character", id);
  r.set("character", character);
  r.set("face_seed", static_cast<long long>(face_seed));
  if (!voice.empty()) r.set("voice", voice);
  return pack_value(r);
}

Bytes encode_set_steps(std::int64_t id, const std::string& character, int steps, int min_steps) {
  Value r = request("set_steps", id);
  r.set("character", character);
  r.set("steps", steps);
  if (min_steps > 0) r.set("min_steps", min_steps);
  return pack_value(r);
}

Bytes encode_set_outputs(std::int64_t id, const std::string& character, std::optional<bool> video,
                         std::optional<bool> rig) {
  Value r = request("set_outputs", id);
  r.set("character", character);
  if (video) r.set("video", *video);
  if (rig) r.set("rig", *rig);
  return pack_value(r);
}

Bytes encode_idle(std::int64_t id, const std::string& character, bool on) {
  Value r = request("idle", id);
  r.set("character", character);
  r.set("on", on);
  return pack_value(r);
}

Bytes encode_stats(std::int64_t id, const std::string& character) {
  Value r = request("stats", id);
  if (!character.empty()) r.set("character", character);
  return pack_value(r);
}

Bytes encode_state(std::int64_t id, const std::string& character) {
  Value r = request("state", id);
  r.set("character", character);
  return pack_value(r);
}

// --- decoding control messages ---------------------------------------------------------------------

const std::vector<std::string>& protocol_ops() {
  static const std::vector<std::string> ops = {"ping",      "say",       "drive",       "idle",  "interrupt",
                                               "set_character", "set_steps", "set_outputs", "stats", "state"};
  return ops;
}

namespace {
struct FieldRule {
  const char* name;
  Value::Type type;
  bool required;
};

const std::vector<FieldRule>& request_fields(const std::string& op) {
  using T = Value::Type;
  static const std::vector<FieldRule> none;
  static const std::vector<FieldRule> say = {{"character", T::String, true}, {"text", T::String, true},
                                             {"voice", T::String, false}, {"steps", T::Int, false}};
  static const std::vector<FieldRule> drive = {{"character", T::String, true}, {"pcm", T::Binary, true},
                                               {"sample_rate", T::Int, true}, {"steps", T::Int, false}};
  static const std::vector<FieldRule> character_only = {{"character", T::String, true}};
  static const std::vector<FieldRule> set_character = {
      {"character", T::String, true}, {"image", T::Binary, false}, {"width", T::Int, false},
      {"height", T::Int, false},      {"face_seed", T::Int, false}, {"voice", T::String, false},
      {"renderer", T::String, false}, {"size", T::Int, false}};
  static const std::vector<FieldRule> set_steps = {{"character", T::String, true}, {"steps", T::Int, true},
                                                   {"min_steps", T::Int, false}};
  static const std::vector<FieldRule> set_outputs = {{"character", T::String, true}, {"video", T::Bool, false},
                                                     {"rig", T::Bool, false}};
  static const std::vector<FieldRule> stats = {{"character", T::String, false}};
  static const std::vector<FieldRule> idle = {{"character", T::String, true}, {"on", T::Bool, true}};
  if (op == "say") return say;
  if (op == "drive") return drive;
  if (op == "interrupt" || op == "state") return character_only;
  if (op == "set_character") return set_character;
  if (op == "set_steps") return set_steps;
  if (op == "set_outputs") return set_outputs;
  if (op == "stats") return stats;
  if (op == "idle") return idle;
  return none;  // ping
}
}  // namespace

Value decode_request(const std::uint8_t* data, std::size_t size) {
  if (size > kMaxRequestBytes)
    throw ProtocolError("request is " + std::to_string(size) + " bytes, more than the " +
                        std::to_string(kMaxRequestBytes) + " allowed");
  Value req = unpack_value(data, size);
  if (!req.is_map()) throw ProtocolError(std::string("a request must be a msgpack map, got ") + req.type_name());
  if (const Value* v = req.find("v"))
    if (!v->is_int() || v->as_int() != kProtocolVersion)
      throw ProtocolError("protocol version " + v->to_string() + " is not supported; this client speaks version " +
                          std::to_string(kProtocolVersion));
  const Value* op = req.find("op");
  bool known = false;
  if (op && op->type() == Value::Type::String)
    for (const std::string& o : protocol_ops()) known = known || o == op->as_string();
  if (!known) {
    std::string list;
    for (const std::string& o : protocol_ops()) list += (list.empty() ? "" : ", ") + o;
    throw ProtocolError("unknown op " + (op ? op->to_string() : std::string("(missing)")) + ": use one of " + list);
  }
  const std::string& name = op->as_string();
  for (const FieldRule& f : request_fields(name)) {
    const Value* v = req.find(f.name);
    if (!v) {
      if (f.required) throw ProtocolError(name + " needs the field '" + f.name + "'");
      continue;
    }
    if (v->type() != f.type)
      throw ProtocolError(name + ": field '" + f.name + "' must be " + Value::type_name(f.type) + ", got " +
                          v->type_name());
  }
  return req;
}

Value decode_reply(const std::uint8_t* data, std::size_t size) {
  Value reply = unpack_value(data, size);
  if (!reply.is_map()) throw ProtocolError(std::string("a reply must be a msgpack map, got ") + reply.type_name());
  const Value* status = reply.find("status");
  if (!status || status->type() != Value::Type::String)
    throw ProtocolError("a reply must be a msgpack map with a string status: " + reply.to_string());
  return reply;
}

void throw_if_error(const Value& reply) {
  const std::string& status = reply.at("status").as_string();
  if (status == "ok") return;
  const Value* err = reply.find("error");
  std::string text = err && err->type() == Value::Type::String ? err->as_string() : "unknown error (status " + status + ")";
  throw ServerError(text);
}

}  // namespace mfruntime
