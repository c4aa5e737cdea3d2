// Every file in tests/vectors/: stream vectors decode to the JSON's values, request/reply vectors decode to the
// JSON's maps (and this library's encoders write the same bytes), every bad_* vector is rejected with the JSON's
// reason. Plus the decoder's other checks on hand-made variations of a good chunk.
//
//   test_vectors PATH/TO/tests/vectors
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "check.hpp"
#include "json.hpp"
#include "mfruntime/protocol.hpp"
#include "sha256.hpp"

namespace fs = std::filesystem;
using mfruntime::Bytes;
using mfruntime::ProtocolError;
using mfruntime::Value;

static fs::path g_dir;

static Bytes read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The vector's parts STEM.0.bin, STEM.1.bin, ... (five since version 2; bad_stream_version_1_four_parts has four).
constexpr int kMaxParts = 8;
static std::vector<Bytes> stream_parts(const std::string& stem) {
  std::vector<Bytes> parts;
  for (int i = 0; i < kMaxParts; ++i) {
    const fs::path p = g_dir / (stem + "." + std::to_string(i) + ".bin");
    if (!fs::exists(p)) break;
    parts.push_back(read_bytes(p));
  }
  return parts;
}

static std::string sha(const Bytes& b) { return testsha::sha256_hex(b.data(), b.size()); }

static std::vector<float> floats_of(const Bytes& b) {
  std::vector<float> f(b.size() / 4);
  for (std::size_t i = 0; i < f.size(); ++i) {
    std::uint32_t u = static_cast<std::uint32_t>(b[4 * i]) | (static_cast<std::uint32_t>(b[4 * i + 1]) << 8) |
                      (static_cast<std::uint32_t>(b[4 * i + 2]) << 16) | (static_cast<std::uint32_t>(b[4 * i + 3]) << 24);
    std::memcpy(&f[i], &u, 4);
  }
  return f;
}

static void check_stream_vector(const std::string& stem, const Value& want) {
  std::vector<Bytes> parts = stream_parts(stem);
  CHECK_EQ(parts.size(), 5u);
  mfruntime::StreamChunk c = mfruntime::decode_chunk(parts);
  const Value& h = want.at("header");
  CHECK_EQ(std::string(parts[0].begin(), parts[0].end()), want.at("topic").as_string());
  CHECK_EQ(c.character, want.at("topic").as_string());
  CHECK_EQ(c.character, h.at("character").as_string());
  CHECK_EQ(h.at("v").as_int(), 3);
  CHECK_EQ(h.at("v").as_int(), static_cast<std::int64_t>(mfruntime::kProtocolVersion));
  CHECK_EQ(c.utterance, h.at("utterance").as_int());
  CHECK_EQ(c.seq, h.at("seq").as_int());
  CHECK_EQ(c.pts, h.at("pts").as_double());
  CHECK_EQ(c.clock, std::llround(h.at("pts").as_double() * h.at("sample_rate").as_int()));
  CHECK_EQ(c.width, h.at("width").as_int());
  CHECK_EQ(c.height, h.at("height").as_int());
  CHECK_EQ(c.frames, h.at("frames").as_int());
  CHECK_EQ(c.fps, h.at("fps").as_int());
  CHECK_EQ(c.sample_rate, h.at("sample_rate").as_int());
  CHECK_EQ(c.samples, h.at("samples").as_int());
  CHECK_EQ(c.eou, h.at("eou").as_bool());
  CHECK_EQ(c.interrupted, h.at("interrupted").as_bool());
  CHECK_EQ(c.has_video, h.at("video").as_bool());
  CHECK_EQ(c.controls, h.at("controls").as_int());
  CHECK_EQ(c.rig_version, h.at("rig_version").as_int());
  CHECK_EQ(c.steps, h.at("steps").as_int());
  CHECK_EQ(c.has_rig(), h.at("controls").as_int() > 0);
  CHECK_EQ(h.size(), 17u);  // the JSON lists exactly the protocol's header fields, each checked above
  // The header decodes to the JSON's map as a whole, too.
  CHECK(mfruntime::unpack_value(parts[1]) == h);

  CHECK_EQ(static_cast<std::int64_t>(c.video.size()), want.at("video_bytes").as_int());
  CHECK_EQ(sha(c.video), want.at("video_sha256").as_string());
  const Value& vf = want.at("video_first");
  for (std::size_t i = 0; i < vf.size(); ++i) CHECK_EQ(static_cast<std::int64_t>(c.video[i]), vf[i].as_int());
  const Value& vl = want.at("video_last");
  for (std::size_t i = 0; i < vl.size(); ++i)
    CHECK_EQ(static_cast<std::int64_t>(c.video[c.video.size() - vl.size() + i]), vl[i].as_int());

  CHECK_EQ(static_cast<std::int64_t>(c.pcm.size() * 4), want.at("pcm_bytes").as_int());
  CHECK_EQ(sha(parts[3]), want.at("pcm_sha256").as_string());
  const Value& pf = want.at("pcm_first");
  for (std::size_t i = 0; i < pf.size(); ++i) CHECK_EQ(static_cast<double>(c.pcm[i]), pf[i].as_double());
  // Every sample decoded: the pattern of docs/PROTOCOL.md, ((n mod 64) − 32) / 64.
  for (std::size_t n = 0; n < c.pcm.size(); ++n)
    if (c.pcm[n] != static_cast<float>((static_cast<int>(n % 64) - 32) / 64.0)) {
      CHECK_EQ(c.pcm[n], static_cast<float>((static_cast<int>(n % 64) - 32) / 64.0));
      break;
    }
  // Every pixel: (7·frame + 3·row + 5·column + 11·channel) mod 256 (none in a rig-only chunk).
  CHECK_EQ(c.video.size(), c.has_video ? static_cast<std::size_t>(c.frames) * c.frame_bytes() : 0u);
  std::size_t k = 0;
  bool pattern = true;
  for (int f = 0; f < c.frames && c.has_video; ++f)
    for (int y = 0; y < c.height; ++y)
      for (int x = 0; x < c.width; ++x)
        for (int ch = 0; ch < 3; ++ch) pattern = pattern && c.video[k++] == (7 * f + 3 * y + 5 * x + 11 * ch) % 256;
  CHECK(pattern);

  // The rig: frames × controls float32, row-major; value n is ((n mod 32) − 16) / 32.
  CHECK_EQ(static_cast<std::int64_t>(c.rig.size() * 4), want.at("rig_bytes").as_int());
  CHECK_EQ(c.rig.size(), static_cast<std::size_t>(c.frames) * static_cast<std::size_t>(c.controls));
  CHECK_EQ(sha(parts[4]), want.at("rig_sha256").as_string());
  const Value& rf = want.at("rig_first");
  for (std::size_t i = 0; i < rf.size(); ++i) CHECK_EQ(static_cast<double>(c.rig[i]), rf[i].as_double());
  for (std::size_t n = 0; n < c.rig.size(); ++n)
    if (c.rig[n] != static_cast<float>((static_cast<int>(n % 32) - 16) / 32.0)) {
      CHECK_EQ(c.rig[n], static_cast<float>((static_cast<int>(n % 32) - 16) / 32.0));
      break;
    }
  for (int f = 0; f < c.frames && c.has_rig(); ++f)  // frame f's row starts at value f × controls
    CHECK_EQ(c.rig_frame(f)[0], c.rig[static_cast<std::size_t>(f) * static_cast<std::size_t>(c.controls)]);
  // Encoding the decoded chunk gives the vector's bytes back.
  std::vector<Bytes> again = mfruntime::encode_chunk(c);
  CHECK_EQ(again.size(), parts.size());
  for (std::size_t i = 0; i < std::min(again.size(), parts.size()); ++i) CHECK(again[i] == parts[i]);
}

// This library's encoder for the request, from the JSON's fields.
static Bytes encode_like(const Value& r) {
  const std::string op = r.at("op").as_string();
  const std::int64_t id = r.at("id").as_int();
  auto opt_str = [&](const char* k) { return r.find(k) ? r.at(k).as_string() : std::string(); };
  auto opt_int = [&](const char* k) { return r.find(k) ? static_cast<int>(r.at(k).as_int()) : 0; };
  if (op == "ping") return mfruntime::encode_ping(id);
  if (op == "say")
    return mfruntime::encode_say(id, r.at("character").as_string(), r.at("text").as_string(), opt_str("voice"),
                                 opt_int("steps"));
  if (op == "drive") {
    std::vector<float> pcm = floats_of(r.at("pcm").as_bytes());
    return mfruntime::encode_drive(id, r.at("character").as_string(), pcm.data(), pcm.size(),
                                   static_cast<int>(r.at("sample_rate").as_int()), opt_int("steps"));
  }
  if (op == "interrupt") return mfruntime::encode_interrupt(id, r.at("character").as_string());
  if (op == "idle") return mfruntime::encode_idle(id, r.at("character").as_string(), r.at("on").as_bool());
  if (op == "set_outputs") {
    auto opt_bool = [&](const char* k) { return r.find(k) ? std::optional<bool>(r.at(k).as_bool()) : std::nullopt; };
    return mfruntime::encode_set_outputs(id, r.at("character").as_string(), opt_bool("video"), opt_bool("rig"));
  }
  if (op == "set_character")
    return mfruntime::encode_set_character_rgb(id, r.at("character").as_string(), r.at("image").as_bytes(),
                                               static_cast<int>(r.at("width").as_int()),
                                               static_cast<int>(r.at("height").as_int()), opt_str("voice"));
  throw std::runtime_error("no encoder check for op " + op);
}

static void check_vector(const std::string& stem) {
  const Value want = testjson::parse_file((g_dir / (stem + ".json")).string());
  const bool has_msgpack = fs::exists(g_dir / (stem + ".msgpack"));
  const bool has_parts = fs::exists(g_dir / (stem + ".0.bin"));
  if (stem.rfind("bad_", 0) == 0) {
    const std::string reason = want.at("error").as_string();
    CHECK(!reason.empty());
    if (has_msgpack) {
      Bytes b = read_bytes(g_dir / (stem + ".msgpack"));
      CHECK_THROWS(mfruntime::decode_request(b), ProtocolError, reason);
    } else {
      CHECK(has_parts);
      std::vector<Bytes> parts = stream_parts(stem);
      CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, reason);
    }
    return;
  }
  if (stem.rfind("stream_", 0) == 0) {
    CHECK(has_parts);
    check_stream_vector(stem, want);
    return;
  }
  if (stem.rfind("request_", 0) == 0) {
    Bytes b = read_bytes(g_dir / (stem + ".msgpack"));
    Value got = mfruntime::decode_request(b);
    CHECK(got == want.at("decoded"));
    if (!(got == want.at("decoded"))) std::printf("    got %s\n", got.to_string().c_str());
    CHECK(encode_like(want.at("decoded")) == b);  // the same bytes as the Python encoder
    return;
  }
  if (stem.rfind("reply_", 0) == 0) {
    Bytes b = read_bytes(g_dir / (stem + ".msgpack"));
    Value got = mfruntime::decode_reply(b);
    CHECK(got == want.at("decoded"));
    const std::string status = want.at("decoded").at("status").as_string();
    if (status == "ok") {
      mfruntime::throw_if_error(got);
    } else {
      CHECK_THROWS(mfruntime::throw_if_error(got), mfruntime::ServerError, want.at("decoded").at("error").as_string());
    }
    return;
  }
  check::fail(__FILE__, __LINE__, "vector " + stem + " is of a kind this test does not know: teach it");
}

// --- the decoder's checks beyond the vectors --------------------------------------------------------

static std::vector<Bytes> good_parts() { return stream_parts("stream_chunk_64px"); }

static std::vector<Bytes> with_header(std::vector<Bytes> parts, const std::string& key, const Value& v, bool remove = false) {
  Value h = mfruntime::unpack_value(parts[1]);
  Value out = Value::map();
  for (std::size_t i = 0; i < h.size(); ++i)
    if (h.keys()[i] != key) out.set(h.keys()[i], h[i]);
    else if (!remove) out.set(key, v);
  parts[1] = mfruntime::pack_value(out);
  return parts;
}

TEST(sha256_known_digests) {
  CHECK_EQ(testsha::sha256_hex(nullptr, 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  const std::uint8_t abc[] = {'a', 'b', 'c'};
  CHECK_EQ(testsha::sha256_hex(abc, 3), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

TEST(decoder_rejects_wrong_part_count) {
  std::vector<Bytes> parts = good_parts();
  parts.pop_back();  // four parts, as protocol version 1 sent
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError,
               "a stream message has 5 parts (topic, header, video, pcm, rig), got 4 (a protocol version 1 server");
  parts = good_parts();
  parts.push_back(Bytes{});
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "5 parts (topic, header, video, pcm, rig), got 6");
  CHECK_THROWS(mfruntime::decode_chunk(std::vector<Bytes>{}), ProtocolError, "got 0");
}

TEST(decoder_rejects_header_not_a_map_or_garbage) {
  std::vector<Bytes> parts = good_parts();
  parts[1] = mfruntime::pack_value(Value::array({1, 2}));
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "must be a msgpack map");
  parts[1] = Bytes{0x85, 0xa1};  // a map of 5 that stops after one byte of key
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "not a msgpack message");
}

TEST(decoder_checks_every_header_field) {
  const char* fields[] = {"character", "utterance", "seq", "pts", "width", "height", "frames", "fps",
                          "sample_rate", "samples", "eou", "interrupted", "video", "controls", "rig_version", "steps"};
  for (const char* f : fields) {
    CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), f, Value(), true)), ProtocolError,
                 std::string("'") + f + "' is missing");
    Value wrong = std::string(f) == "character" ? Value(5) : Value("x");
    CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), f, wrong)), ProtocolError,
                 std::string("'") + f + "' must be");
  }
  // v: missing, a string, another number.
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "v", Value(), true)), ProtocolError, "version");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "v", Value("1"))), ProtocolError, "version");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "v", Value(0))), ProtocolError, "version");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "v", Value(1))), ProtocolError,
               "stream protocol version 1, this client reads 3");
  // A bool is not an int, and an int is not a bool.
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "seq", Value(true))), ProtocolError, "'seq' must be int");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "eou", Value(1))), ProtocolError, "'eou' must be bool");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "video", Value(1))), ProtocolError, "'video' must be bool");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "controls", Value(false))), ProtocolError,
               "'controls' must be int");
}

TEST(decoder_accepts_integer_pts) {
  mfruntime::StreamChunk c = mfruntime::decode_chunk(with_header(good_parts(), "pts", Value(2)));
  CHECK_EQ(c.pts, 2.0);
  CHECK_EQ(c.clock, 32000);
}

TEST(decoder_rejects_negative_sizes_and_wrong_lengths) {
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "frames", Value(-4))), ProtocolError, "negative");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "samples", Value(-1))), ProtocolError, "negative");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "width", Value(-64))), ProtocolError, "negative");
  std::vector<Bytes> parts = good_parts();
  parts[3].pop_back();
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "pcm part");
  parts = good_parts();
  parts[2].push_back(0);
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "video part");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "controls", Value(-1))), ProtocolError, "negative");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "rig_version", Value(-1))), ProtocolError, "negative");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "steps", Value(-1))), ProtocolError, "negative");
  // The rig part: frames × controls × 4 bytes.
  parts = good_parts();
  parts[4].resize(parts[4].size() - 4);  // one value short
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError,
               "rig part is 444 bytes, the header says 448 (4 frames of 28 float32 controls)");
  parts = good_parts();
  parts[4].clear();  // a header that announces a rig, and none
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "rig part is 0 bytes");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "controls", Value(0))), ProtocolError,
               "rig part is 448 bytes, the header says 0");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "controls", Value(27))), ProtocolError, "rig part");
  // Without a rig: an empty rig part, and no values.
  parts = with_header(good_parts(), "controls", Value(0));
  parts[4].clear();
  mfruntime::StreamChunk bare = mfruntime::decode_chunk(parts);
  CHECK(!bare.has_rig() && bare.rig.empty() && bare.has_video && bare.video.size() == 4u * 64 * 64 * 3);
  // Rig-only (video false): the video part must be empty, whatever frames, width and height say.
  parts = with_header(good_parts(), "video", Value(false));
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "video part is 49152 bytes, the header says 0 (video is false");
  parts[2].clear();
  mfruntime::StreamChunk rig_only = mfruntime::decode_chunk(parts);
  CHECK(!rig_only.has_video && rig_only.video.empty() && rig_only.frames == 4 && rig_only.rig.size() == 4u * 28);
  // ... and with video true an empty video part is wrong.
  parts = good_parts();
  parts[2].clear();
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "video part is 0 bytes, the header says 49152");
  // Sizes whose product overflows are rejected, not wrapped.
  std::vector<Bytes> huge = with_header(good_parts(), "width", Value(2147483647LL));
  huge = with_header(huge, "height", Value(2147483647LL));
  huge = with_header(huge, "frames", Value(2147483647LL));
  CHECK_THROWS(mfruntime::decode_chunk(huge), ProtocolError, "'width' is out of range: 2147483647 (0-8192)");
}

TEST(decoder_rejects_header_values_out_of_range_and_bad_pts) {
  const std::pair<const char*, long long> limits[] = {{"width", 8192},        {"height", 8192},
                                                      {"frames", 1000},       {"fps", 1000},
                                                      {"sample_rate", 384000}, {"samples", 16 * 1024 * 1024},
                                                      {"controls", 4096}};
  for (const auto& l : limits)
    CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), l.first, Value(l.second + 1))), ProtocolError,
                 std::string("stream header field '") + l.first + "' is out of range: " + std::to_string(l.second + 1) +
                     " (0-" + std::to_string(l.second) + ")");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "fps", Value(0))), ProtocolError,
               "fps and sample_rate must be positive");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "sample_rate", Value(0))), ProtocolError,
               "fps and sample_rate must be positive");
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), -0.5})
    CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "pts", Value(bad))), ProtocolError,
                 "stream header field 'pts' must be a finite time >= 0");
  CHECK_THROWS(mfruntime::decode_chunk(with_header(good_parts(), "pts", Value(1e300))), ProtocolError, "'pts' is too large");
  CHECK_EQ(mfruntime::decode_chunk(with_header(good_parts(), "pts", Value(0.0))).clock, 0);  // 0 is a valid time
}

TEST(decoder_compares_topic_exactly) {
  std::vector<Bytes> parts = good_parts();
  parts[0] = Bytes{'n', 'p', 'c', '-', '1', '0'};  // a prefix match on SUB, but another character
  CHECK_THROWS(mfruntime::decode_chunk(parts), ProtocolError, "topic");
}

TEST(request_decoder_checks_fields_and_version) {
  Value say = mfruntime::unpack_value(mfruntime::encode_say(1, "npc", "hi"));
  say.set("text", 5);
  CHECK_THROWS(mfruntime::decode_request(mfruntime::pack_value(say)), ProtocolError, "field 'text' must be str");
  Value missing = Value::map({{"op", "say"}, {"character", "npc"}});
  CHECK_THROWS(mfruntime::decode_request(mfruntime::pack_value(missing)), ProtocolError, "needs the field 'text'");
  Value v1 = Value::map({{"v", 1}, {"op", "ping"}});
  CHECK_THROWS(mfruntime::decode_request(mfruntime::pack_value(v1)), ProtocolError,
               "protocol version 1 is not supported; this client speaks version 3");
  Value outputs = mfruntime::unpack_value(mfruntime::encode_set_outputs(1, "npc", false));
  CHECK(outputs.find("video") && !outputs.at("video").as_bool() && !outputs.find("rig"));  // rig left as it is
  outputs.set("video", "no");
  CHECK_THROWS(mfruntime::decode_request(mfruntime::pack_value(outputs)), ProtocolError,
               "set_outputs: field 'video' must be bool");
  Value no_character = Value::map({{"v", 3}, {"op", "set_outputs"}, {"video", true}});
  CHECK_THROWS(mfruntime::decode_request(mfruntime::pack_value(no_character)), ProtocolError,
               "set_outputs needs the field 'character'");
  Bytes extra = mfruntime::encode_ping(1);
  extra.push_back(0xc0);
  CHECK_THROWS(mfruntime::decode_request(extra), ProtocolError, "not a msgpack message");
  CHECK_THROWS(mfruntime::decode_reply(mfruntime::pack_value(Value::map({{"v", 1}}))), ProtocolError, "status");
  // Every op has an encoder whose output the request decoder accepts.
  std::vector<Bytes> all = {mfruntime::encode_ping(1),
                            mfruntime::encode_say(2, "a", "Hi.", "en-gb-x-rp+f2", 4),
                            mfruntime::encode_interrupt(4, "a"),
                            mfruntime::encode_set_character_image(5, "a", Bytes{1, 2, 3}),
                            mfruntime::encode_set_character_seed(6, "a", 7, "en"),
                            mfruntime::encode_set_steps(7, "a", 3),
                            mfruntime::encode_set_steps(14, "a", 4, 1),
                            mfruntime::encode_set_outputs(11, "a", false, true),
                            mfruntime::encode_set_outputs(12, "a", std::nullopt, std::nullopt),
                            mfruntime::encode_stats(8),
                            mfruntime::encode_stats(9, "a"),
                            mfruntime::encode_state(10, "a"),
                            mfruntime::encode_idle(13, "a", true)};
  float pcm[3] = {0.5f, -0.25f, 0.0f};
  all.push_back(mfruntime::encode_drive(3, "a", pcm, 3, 22050, 2));
  std::set<std::string> ops;
  for (const Bytes& b : all) {
    Value r = mfruntime::decode_request(b);
    CHECK_EQ(r.at("v").as_int(), 3);
    ops.insert(r.at("op").as_string());
  }
  CHECK_EQ(ops.size(), mfruntime::protocol_ops().size());
  Value portrait = mfruntime::decode_request(mfruntime::encode_set_character_image(15, "a", Bytes{1}, "", "auto", 320));
  CHECK(portrait.at("renderer").as_string() == "auto" && portrait.at("size").as_int() == 320);
  CHECK(mfruntime::decode_request(all[3]).find("renderer") == nullptr);  // left out: the server's default
  Value d = mfruntime::decode_request(all.back());
  CHECK(floats_of(d.at("pcm").as_bytes()) == std::vector<float>(pcm, pcm + 3));
  CHECK_EQ(d.at("sample_rate").as_int(), 22050);
  CHECK_THROWS(mfruntime::encode_set_character_rgb(1, "a", Bytes(11), 2, 2), std::invalid_argument, "width x height x 3");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: test_vectors PATH/TO/tests/vectors\n");
    return 2;
  }
  g_dir = argv[1];
  std::vector<std::string> stems;
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(g_dir)) {
    ++files;
    if (e.path().extension() == ".json") stems.push_back(e.path().stem().string());
  }
  std::sort(stems.begin(), stems.end());
  if (stems.empty()) {
    std::printf("no vectors (*.json) in %s\n0 passed, 1 failed\n", g_dir.string().c_str());
    return 1;
  }
  // Every file belongs to a vector that is checked (no stray file left unexamined).
  std::size_t claimed = 0;
  for (const std::string& s : stems) {
    claimed += 1;  // the .json
    if (fs::exists(g_dir / (s + ".msgpack"))) claimed += 1;
    for (int i = 0; i < kMaxParts; ++i) claimed += fs::exists(g_dir / (s + "." + std::to_string(i) + ".bin")) ? 1 : 0;
  }
  check::cases().push_back({"every_vector_file_is_checked", [files, claimed] { CHECK_EQ(files, claimed); }});
  for (const std::string& s : stems) {
    check::cases().push_back({"vector_" + s, [s] { check_vector(s); }});
  }
  std::printf("%zu vectors in %s\n", stems.size(), g_dir.string().c_str());
  return check::run_all();
}
