// The rig control names and RigMapper (name map, presets, resolving against a mesh, clamping, smoothing). Linked into
// test_player (no main here): the ctest entry `player` runs both.
#include <array>
#include <cmath>
#include <limits>

#include "check.hpp"
#include "mfruntime/player.hpp"
#include "mfruntime/rig.hpp"

using mfruntime::RigMap;
using mfruntime::RigMapper;
using mfruntime::Value;

namespace {

// A rig frame of rig version 1 with every value 0 but the named ones.
std::vector<float> frame_with(std::initializer_list<std::pair<const char*, float>> values) {
  std::vector<float> f(mfruntime::rig_controls().size(), 0.0f);
  for (const auto& v : values) {
    const int i = mfruntime::rig_control_index(v.first);
    if (i < 0) throw std::runtime_error(std::string("test bug: no control ") + v.first);
    f[static_cast<std::size_t>(i)] = v.second;
  }
  return f;
}

// The mapper's weight for `target` (as the mesh spells it), or -1 when it drives no such target.
float weight(const RigMapper& m, const std::string& target) {
  for (std::size_t i = 0; i < m.targets().size(); ++i)
    if (m.targets()[i] == target) return m.weights()[i];
  return -1.0f;
}

bool reported(const RigMapper& m, const std::string& text) {
  for (const auto& u : m.unmatched())
    if (u.message.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(rig_controls_are_the_protocols_list) {
  const auto& c = mfruntime::rig_controls();
  CHECK_EQ(c.size(), 28u);
  CHECK_EQ(c.front(), std::string("jawOpen"));
  CHECK_EQ(c[8], std::string("headYaw"));
  CHECK_EQ(c[12], std::string("headOffsetY"));
  CHECK_EQ(c[13], std::string("viseme_sil"));
  CHECK_EQ(c[14], std::string("viseme_PP"));
  CHECK_EQ(c.back(), std::string("viseme_ou"));
  CHECK_EQ(mfruntime::rig_blendshape_controls().size(), 8u);
  CHECK_EQ(mfruntime::rig_blendshape_controls().back(), std::string("eyeBlinkRight"));
  CHECK_EQ(mfruntime::rig_viseme_controls().size(), 15u);
  CHECK_EQ(mfruntime::rig_viseme_controls().front(), std::string("viseme_sil"));
  CHECK_EQ(mfruntime::rig_control_index("viseme_aa"), 23);
  CHECK_EQ(mfruntime::rig_control_index("JawOpen"), -1);  // names are exact
  // ping's rig.controls, and an older server's ping without them.
  Value names = Value::array({"jawOpen", "viseme_sil"});
  Value rig = Value::map({{"version", 1}});
  rig.set("controls", names);
  Value pong = Value::map({{"status", "ok"}, {"protocol", 3}});
  pong.set("rig", rig);
  CHECK(mfruntime::rig_controls_from_ping(pong) == std::vector<std::string>({"jawOpen", "viseme_sil"}));
  CHECK(mfruntime::rig_controls_from_ping(Value::map({{"status", "ok"}})).empty());
}

TEST(rig_arkit_preset_maps_the_face_controls_by_name_and_leaves_the_head_pose_apart) {
  RigMap map = RigMap::arkit();
  CHECK_EQ(map.entries().size(), 8u);
  // The mesh spells one target in another case (Unreal's FName ignores case): it matches, spelled as the mesh does.
  std::vector<std::string> mesh = {"Basis", "JawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft",
                                   "mouthStretchRight", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp"};
  RigMapper m(map, mesh);
  CHECK(m.unmatched().empty());
  CHECK_EQ(m.matched(), 8u);
  CHECK_EQ(m.targets().size(), 8u);
  CHECK_EQ(m.targets()[0], std::string("JawOpen"));
  m.set_frame(frame_with({{"jawOpen", 0.7f}, {"eyeBlinkRight", 1.0f}, {"mouthPucker", 0.25f}, {"headYaw", 0.3f},
                          {"headRoll", -0.1f}, {"headOffsetX", 0.05f}, {"viseme_aa", 0.9f}}));
  CHECK_NEAR(weight(m, "JawOpen"), 0.7, 1e-6);  // identity, and no smoothing by default
  CHECK_NEAR(weight(m, "eyeBlinkRight"), 1.0, 1e-6);
  CHECK_NEAR(weight(m, "mouthPucker"), 0.25, 1e-6);
  CHECK_NEAR(weight(m, "mouthClose"), 0.0, 1e-6);
  CHECK_EQ(weight(m, "browInnerUp"), -1.0f);  // not driven
  CHECK_NEAR(m.head_pose().yaw, 0.3, 1e-6);    // the head pose is reported, not put on morph targets
  CHECK_NEAR(m.head_pose().roll, -0.1, 1e-6);
  CHECK_NEAR(m.head_pose().offset_x, 0.05, 1e-6);
  CHECK_NEAR(m.head_pose().pitch, 0.0, 1e-6);
  m.rest();
  CHECK_NEAR(weight(m, "JawOpen"), 0.0, 1e-6);
  CHECK_NEAR(m.head_pose().yaw, 0.0, 1e-6);
  // A prefix for meshes that name them e.g. ARKit_jawOpen.
  RigMapper prefixed(RigMap().add_arkit(1.0f, "ARKit_"), {"ARKit_jawOpen"});
  CHECK_EQ(prefixed.matched(), 1u);
  CHECK_EQ(prefixed.unmatched().size(), 7u);
}

TEST(rig_ovr_viseme_preset_reports_the_visemes_the_mesh_lacks) {
  std::vector<std::string> mesh;
  for (const std::string& v : mfruntime::rig_viseme_controls())
    if (v != "viseme_TH" && v != "viseme_nn") mesh.push_back(v);
  RigMapper m(RigMap::ovr_visemes(), mesh);
  CHECK_EQ(m.matched(), 13u);
  CHECK_EQ(m.unmatched().size(), 2u);
  CHECK(reported(m, "rig map entry viseme_TH -> viseme_TH: the mesh has no morph target 'viseme_TH'"));
  CHECK(reported(m, "the mesh has no morph target 'viseme_nn'"));
  if (m.unmatched().size() == 2) CHECK_EQ(m.unmatched()[1].entry.control, std::string("viseme_nn"));
  m.set_frame(frame_with({{"viseme_aa", 0.6f}, {"viseme_E", 0.3f}, {"viseme_TH", 0.1f}}));
  CHECK_NEAR(weight(m, "viseme_aa"), 0.6, 1e-6);
  CHECK_NEAR(weight(m, "viseme_E"), 0.3, 1e-6);
  float sum = 0.0f;
  for (float w : m.weights()) sum += w;
  CHECK_NEAR(sum, 0.9, 1e-6);  // viseme_TH's share has nowhere to go
  // Ready Player Me names three visemes viseme_I, viseme_O, viseme_U: the preset finds those too.
  std::vector<std::string> rpm;
  for (const std::string& v : mfruntime::rig_viseme_controls()) rpm.push_back(v);
  rpm[12] = "viseme_I";
  rpm[13] = "viseme_O";
  rpm[14] = "viseme_U";
  RigMapper r(RigMap::ovr_visemes(), rpm);
  CHECK(r.unmatched().empty());
  CHECK_EQ(r.targets().size(), 15u);
  r.set_frame(frame_with({{"viseme_oh", 0.8f}}));
  CHECK_NEAR(weight(r, "viseme_O"), 0.8, 1e-6);
  RigMapper lacks(RigMap::ovr_visemes(), {"viseme_sil"});
  CHECK(reported(lacks, "rig map entry viseme_ou -> viseme_ou|viseme_U: the mesh has no morph target 'viseme_ou' or "
                        "'viseme_U'"));
  // Both presets at once, onto a mesh without any morph targets: every entry reported.
  RigMapper none(RigMap().add_arkit().add_ovr_visemes(), {});
  CHECK_EQ(none.matched(), 0u);
  CHECK_EQ(none.unmatched().size(), 23u);
  CHECK(reported(none, "the mesh has no morph targets"));
  none.set_frame(frame_with({{"jawOpen", 1.0f}}));
  none.update(0.1);
  CHECK(none.weights().empty());
}

TEST(rig_custom_entries_add_into_one_target_with_scales_and_clamp_to_0_1) {
  RigMap map;
  map.add("jawOpen", "MouthOpen", 0.5f)
      .add("viseme_aa", "MouthOpen", 1.0f)
      .add("viseme_oh", "MouthOpen", 0.5f)
      .add("mouthStretchLeft", "Smile", 1.0f)
      .add("mouthPucker", "Smile", -2.0f)
      .add("eyeBlinkLeft", "Blink", 1.0f)
      .add("eyeBlinkRight", "Blink", 1.0f);
  RigMapper m(map, {"MouthOpen", "Smile", "Blink"});
  CHECK(m.unmatched().empty());
  CHECK(m.targets() == std::vector<std::string>({"MouthOpen", "Smile", "Blink"}));
  m.set_frame(frame_with({{"jawOpen", 0.4f}, {"viseme_aa", 0.3f}, {"viseme_oh", 0.2f}, {"mouthStretchLeft", 0.5f},
                          {"eyeBlinkLeft", 0.8f}, {"eyeBlinkRight", 0.7f}}));
  CHECK_NEAR(weight(m, "MouthOpen"), 0.4 * 0.5 + 0.3 + 0.2 * 0.5, 1e-6);
  CHECK_NEAR(weight(m, "Smile"), 0.5, 1e-6);
  CHECK_NEAR(weight(m, "Blink"), 1.0, 1e-6);  // 1.5 clamped
  m.set_frame(frame_with({{"mouthStretchLeft", 0.5f}, {"mouthPucker", 0.5f}}));
  CHECK_NEAR(weight(m, "Smile"), 0.0, 1e-6);  // 0.5 − 1.0 clamped
  CHECK_NEAR(m.goals()[1], 0.0, 1e-6);
  // Values that are not finite count as 0; a short frame (an older rig, or none) leaves the rest at 0; values beyond
  // the names (a newer rig version) are ignored.
  std::vector<float> f = frame_with({{"jawOpen", std::numeric_limits<float>::quiet_NaN()}, {"viseme_aa", 0.5f}});
  m.set_frame(f);
  CHECK_NEAR(weight(m, "MouthOpen"), 0.5, 1e-6);
  m.set_frame(f.data(), 1);  // only jawOpen (NaN)
  CHECK_NEAR(weight(m, "MouthOpen"), 0.0, 1e-6);
  f.push_back(1.0f);
  m.set_frame(f);
  CHECK_NEAR(weight(m, "MouthOpen"), 0.5, 1e-6);
  m.set_frame(nullptr, 0);
  for (float w : m.weights()) CHECK_EQ(w, 0.0f);
}

TEST(rig_unknown_names_are_reported_not_dropped) {
  RigMap map;
  map.add("jawopen", "Jaw")                                   // wrong case: a suggestion
      .add("smile", "Smile")                                  // no such control
      .add("jawOpen", "Jaw_Open")                             // no such morph target
      .add("jawOpen", "Jaw", std::numeric_limits<float>::infinity())  // a scale that is not a number
      .add("jawOpen", "Jaw")                                  // fine
      .add("", "Jaw")                                         // no control
      .add("jawOpen", "|");                                   // no target
  RigMapper m(map, {"Jaw", "Smile"});
  CHECK_EQ(m.matched(), 1u);
  CHECK_EQ(m.unmatched().size(), 6u);
  CHECK(reported(m, "rig map entry  -> Jaw: an entry needs a control and a morph target name"));
  CHECK(reported(m, "rig map entry jawOpen -> |: an entry needs a control and a morph target name"));
  CHECK(reported(m, "rig map entry jawopen -> Jaw: 'jawopen' is not a rig control (did you mean 'jawOpen'?)"));
  CHECK(reported(m, "'smile' is not a rig control (the 28 names are in ping's rig.controls)"));
  CHECK(reported(m, "rig map entry jawOpen -> Jaw_Open: the mesh has no morph target 'Jaw_Open'"));
  // Several spellings: the first the mesh has (here the second).
  RigMapper alt(RigMap().add("jawOpen", "JawOpen|Jaw|Smile"), {"Smile", "Jaw"});
  CHECK(alt.unmatched().empty() && alt.targets() == std::vector<std::string>({"Jaw"}));
  RigMapper none(RigMap().add("jawOpen", "A|B|C"), {"Jaw"});
  CHECK(reported(none, "the mesh has no morph target 'A', 'B' or 'C'"));
  CHECK(reported(m, "the scale is not a finite number"));
  CHECK(m.targets() == std::vector<std::string>({"Jaw"}));
  // Against the server's own list (ping's rig.controls): a newer list with a name appended maps it too.
  std::vector<std::string> newer = mfruntime::rig_controls();
  newer.push_back("tongueOut");
  RigMapper n(RigMap().add("tongueOut", "Tongue").add("jawOpen", "Jaw"), {"Tongue", "Jaw"}, newer);
  CHECK(n.unmatched().empty());
  std::vector<float> f = frame_with({{"jawOpen", 0.5f}});
  n.set_frame(f);  // a version-1 frame: no tongueOut value, it stays 0
  CHECK_NEAR(weight(n, "Tongue"), 0.0, 1e-6);
  f.push_back(0.75f);
  n.set_frame(f);
  CHECK_NEAR(weight(n, "Tongue"), 0.75, 1e-6);
  CHECK_NEAR(weight(n, "Jaw"), 0.5, 1e-6);
}

TEST(rig_smoothing_is_exponential_with_a_time_constant) {
  const double tau = 0.08;
  RigMapper m(RigMap::arkit(), mfruntime::rig_blendshape_controls(), mfruntime::rig_controls(), tau);
  CHECK_EQ(m.smoothing(), tau);
  m.set_frame(frame_with({{"jawOpen", 1.0f}, {"headYaw", 0.4f}}));
  CHECK_EQ(weight(m, "jawOpen"), 0.0f);  // it moves in update(), not before
  m.update(tau);
  CHECK_NEAR(weight(m, "jawOpen"), 1.0 - std::exp(-1.0), 1e-6);  // a step reaches 1 − e⁻¹ after τ
  CHECK_NEAR(m.head_pose().yaw, 0.4 * (1.0 - std::exp(-1.0)), 1e-6);
  // The same in many small ticks (independent of the frame rate) ...
  RigMapper fine(RigMap::arkit(), mfruntime::rig_blendshape_controls(), mfruntime::rig_controls(), tau);
  fine.set_frame(frame_with({{"jawOpen", 1.0f}}));
  for (int i = 0; i < 80; ++i) fine.update(tau / 80);
  CHECK_NEAR(weight(fine, "jawOpen"), 1.0 - std::exp(-1.0), 1e-5);
  // ... and after 5 τ it is within 1 % of the goal; dt ≤ 0 changes nothing.
  fine.update(4 * tau);
  CHECK_NEAR(weight(fine, "jawOpen"), 1.0 - std::exp(-5.0), 1e-5);
  const float held = weight(fine, "jawOpen");
  fine.update(0.0);
  fine.update(-1.0);
  CHECK_EQ(weight(fine, "jawOpen"), held);
  // Back to rest with the same time constant.
  fine.rest();
  fine.update(tau);
  CHECK_NEAR(weight(fine, "jawOpen"), held * std::exp(-1.0), 1e-5);
  // No smoothing: the weights follow the frames at once.
  fine.set_smoothing(0.0);
  fine.set_frame(frame_with({{"jawOpen", 0.3f}}));
  CHECK_NEAR(weight(fine, "jawOpen"), 0.3, 1e-6);
  fine.update(1.0);
  CHECK_NEAR(weight(fine, "jawOpen"), 0.3, 1e-6);
  CHECK_THROWS(fine.set_smoothing(-0.1), std::invalid_argument, "rig smoothing must be a time >= 0 seconds");
  CHECK_THROWS(fine.set_smoothing(std::nan("")), std::invalid_argument, "rig smoothing");
}

TEST(rig_relaxes_to_rest_when_no_frame_comes) {
  RigMapper m(RigMap::arkit(), mfruntime::rig_blendshape_controls());
  CHECK_EQ(m.rest_after(), 0.0);  // never, by default
  m.set_frame(frame_with({{"jawOpen", 0.6f}, {"headPitch", 0.2f}}));
  m.update(10.0);
  CHECK_NEAR(weight(m, "jawOpen"), 0.6, 1e-6);
  m.set_rest_after(0.2);
  m.set_frame(frame_with({{"jawOpen", 0.6f}, {"headPitch", 0.2f}}));
  for (int i = 0; i < 9; ++i) m.update(0.02);  // 180 ms without a new frame: held
  CHECK_NEAR(weight(m, "jawOpen"), 0.6, 1e-6);
  m.update(0.02);  // 200 ms: rest
  CHECK_NEAR(weight(m, "jawOpen"), 0.0, 1e-6);
  CHECK_NEAR(m.head_pose().pitch, 0.0, 1e-6);
  m.update(0.02);
  CHECK_NEAR(weight(m, "jawOpen"), 0.0, 1e-6);
  m.set_frame(frame_with({{"jawOpen", 0.4f}}));  // frames again: the timer starts over
  m.update(0.19);
  CHECK_NEAR(weight(m, "jawOpen"), 0.4, 1e-6);
  // With smoothing the relaxing is smooth too: τ after the rest it is at e⁻¹ of the held weight.
  m.set_smoothing(0.05);
  m.update(0.01);  // rest (0.2 s since the frame)
  const float at_rest = weight(m, "jawOpen");
  CHECK_NEAR(at_rest, 0.4 * std::exp(-0.01 / 0.05), 1e-5);
  m.update(0.05);
  CHECK_NEAR(weight(m, "jawOpen"), at_rest * std::exp(-1.0), 1e-5);
  CHECK_THROWS(m.set_rest_after(-1.0), std::invalid_argument, "rest_after must be a time >= 0 seconds");
}

TEST(rig_frames_from_the_player_drive_the_mapper) {
  // The engine loop: take the frame that is due, give its rig to the mapper, update by the tick's time.
  mfruntime::PlayerConfig cfg;
  cfg.prebuffer_ms = 0;
  mfruntime::Player p(cfg);
  mfruntime::StreamChunk c;
  c.character = "default";
  c.utterance = 1;
  c.fps = 25;
  c.sample_rate = 16000;
  c.samples = 2560;
  c.frames = 4;
  c.width = c.height = 64;
  c.eou = true;
  c.has_video = false;  // rig-only
  c.controls = static_cast<int>(mfruntime::rig_controls().size());
  c.pcm.assign(2560, 0.1f);
  for (int i = 0; i < 4; ++i) {
    std::vector<float> row = frame_with({{"jawOpen", 0.25f * static_cast<float>(i)}});
    c.rig.insert(c.rig.end(), row.begin(), row.end());
  }
  CHECK(p.push(c));
  RigMapper m(RigMap::arkit(), {"jawOpen"});
  std::vector<float> audio(960);
  std::vector<float> seen;
  for (int tick = 0; tick < 8; ++tick) {
    p.read_audio(audio.data(), 960, 1);  // 20 ms at 48 kHz, mono
    if (auto f = p.take_frame()) m.set_frame(f->rig);
    m.update(0.02);
    seen.push_back(weight(m, "jawOpen"));
  }
  // 20-ms ticks, 40-ms frames: each frame shows for two ticks, in order.
  CHECK(seen == std::vector<float>({0.0f, 0.25f, 0.25f, 0.5f, 0.5f, 0.75f, 0.75f, 0.75f}));
}

namespace {

// Unreal's FRotationMatrix for a rotator, applied to a vector (Unreal multiplies row vectors: v' = v M, so the rows are
// the images of X, Y and Z).
std::array<double, 3> unreal_turn(const mfruntime::UnrealRotator& r, std::array<double, 3> v) {
  const double k = 3.14159265358979323846 / 180.0;
  const double sp = std::sin(r.pitch * k), cp = std::cos(r.pitch * k), sy = std::sin(r.yaw * k),
               cy = std::cos(r.yaw * k), sr = std::sin(r.roll * k), cr = std::cos(r.roll * k);
  const double m[3][3] = {{cp * cy, cp * sy, sp},
                          {sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp},
                          {-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp}};
  std::array<double, 3> o{};
  for (int j = 0; j < 3; ++j) o[j] = v[0] * m[0][j] + v[1] * m[1][j] + v[2] * m[2][j];
  return o;
}

}  // namespace

TEST(rig_head_pose_turns_the_way_the_rig_says_in_unreals_axes) {
  // The head faces +X, +Z up, its left is −Y (Unreal: X forward, Y right, Z up).
  const std::array<double, 3> forward{1, 0, 0}, up{0, 0, 1};
  mfruntime::HeadPose yaw, pitch, roll;
  yaw.yaw = pitch.pitch = roll.roll = 0.3f;
  CHECK(unreal_turn(mfruntime::unreal_rotator(yaw), forward)[1] < -0.25);    // + yaw: turns to its left
  CHECK(unreal_turn(mfruntime::unreal_rotator(pitch), forward)[2] < -0.25);  // + pitch: nods down
  CHECK(unreal_turn(mfruntime::unreal_rotator(roll), up)[1] < -0.25);        // + roll: tips to its left (the viewer's right)
  const mfruntime::UnrealRotator rest = mfruntime::unreal_rotator(mfruntime::HeadPose{});
  CHECK(rest.pitch == 0.0f && rest.yaw == 0.0f && rest.roll == 0.0f);
}
