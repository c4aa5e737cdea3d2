// The rig control names and the mapping of rig frames onto morph targets (name map, clamping, smoothing).
#include "mfruntime/rig.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <stdexcept>

namespace mfruntime {

namespace {

// mfruntime/rig.py FACE_CONTROLS and OVR_VISEMES, rig version 1.
const char* const kFace[] = {"jawOpen",          "mouthClose",        "mouthFunnel",  "mouthPucker",  "mouthStretchLeft",
                             "mouthStretchRight", "eyeBlinkLeft",     "eyeBlinkRight", "headYaw",      "headPitch",
                             "headRoll",          "headOffsetX",      "headOffsetY"};
constexpr std::size_t kBlendshapes = 8;  // the first 8 face controls are weights 0–1
const char* const kVisemes[] = {"sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS",
                                "nn",  "RR", "aa", "E",  "ih", "oh", "ou"};
// HeadPose's fields, in order.
const char* const kHead[] = {"headYaw", "headPitch", "headRoll", "headOffsetX", "headOffsetY"};

std::string lower(std::string s) {
  for (char& ch : s)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return s;
}

// Index of `name` in `names`: exact, or else ignoring ASCII case; -1 when neither.
long find_name(const std::vector<std::string>& names, const std::string& name, bool ignore_case) {
  auto it = std::find(names.begin(), names.end(), name);
  if (it != names.end()) return static_cast<long>(it - names.begin());
  if (!ignore_case) return -1;
  const std::string want = lower(name);
  for (std::size_t i = 0; i < names.size(); ++i)
    if (lower(names[i]) == want) return static_cast<long>(i);
  return -1;
}

float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

// "a|b|c" → {"a", "b", "c"} (empty spellings left out).
std::vector<std::string> spellings(const std::string& target) {
  std::vector<std::string> out;
  std::size_t from = 0;
  while (from <= target.size()) {
    std::size_t bar = target.find('|', from);
    if (bar == std::string::npos) bar = target.size();
    if (bar > from) out.push_back(target.substr(from, bar - from));
    from = bar + 1;
  }
  return out;
}

}  // namespace

const std::vector<std::string>& rig_controls() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> v(std::begin(kFace), std::end(kFace));
    for (const char* s : kVisemes) v.push_back(std::string("viseme_") + s);
    return v;
  }();
  return all;
}

const std::vector<std::string>& rig_blendshape_controls() {
  static const std::vector<std::string> v(std::begin(kFace), std::begin(kFace) + kBlendshapes);
  return v;
}

const std::vector<std::string>& rig_viseme_controls() {
  static const std::vector<std::string> v(rig_controls().end() - static_cast<std::ptrdiff_t>(std::size(kVisemes)),
                                          rig_controls().end());
  return v;
}

int rig_control_index(const std::string& name) { return static_cast<int>(find_name(rig_controls(), name, false)); }

std::vector<std::string> rig_controls_from_ping(const Value& reply) {
  std::vector<std::string> names;
  const Value* rig = reply.find("rig");
  const Value* controls = rig ? rig->find("controls") : nullptr;
  if (!controls || controls->type() != Value::Type::Array) return names;
  for (std::size_t i = 0; i < controls->size(); ++i) names.push_back((*controls)[i].as_string());
  return names;
}

// --- RigMap ------------------------------------------------------------------------------------------

RigMap& RigMap::add(std::string control, std::string target, float scale) {
  entries_.push_back(RigMapEntry{std::move(control), std::move(target), scale});
  return *this;
}

RigMap& RigMap::add_arkit(float scale, const std::string& target_prefix) {
  for (const std::string& c : rig_blendshape_controls()) add(c, target_prefix + c, scale);
  return *this;
}

RigMap& RigMap::add_ovr_visemes(float scale, const std::string& target_prefix) {
  for (const std::string& c : rig_viseme_controls()) {
    std::string target = target_prefix + c;
    // Ready Player Me's spelling of three of them.
    if (c == "viseme_ih") target += "|" + target_prefix + "viseme_I";
    if (c == "viseme_oh") target += "|" + target_prefix + "viseme_O";
    if (c == "viseme_ou") target += "|" + target_prefix + "viseme_U";
    add(c, target, scale);
  }
  return *this;
}

// --- RigMapper ---------------------------------------------------------------------------------------

RigMapper::RigMapper(const RigMap& map, const std::vector<std::string>& mesh_targets,
                     const std::vector<std::string>& controls, double smoothing_seconds) {
  set_smoothing(smoothing_seconds);
  for (const RigMapEntry& e : map.entries()) {
    const std::string what = "rig map entry " + e.control + " -> " + e.target + ": ";
    const std::vector<std::string> names = spellings(e.target);
    if (e.control.empty() || names.empty()) {
      unmatched_.push_back({e, what + "an entry needs a control and a morph target name"});
      continue;
    }
    if (!std::isfinite(e.scale)) {
      unmatched_.push_back({e, what + "the scale is not a finite number"});
      continue;
    }
    const long control = find_name(controls, e.control, false);
    if (control < 0) {
      const long near = find_name(controls, e.control, true);
      std::string msg = what + "'" + e.control + "' is not a rig control";
      msg += near >= 0 ? " (did you mean '" + controls[static_cast<std::size_t>(near)] + "'?)"
                       : " (the " + std::to_string(controls.size()) + " names are in ping's rig.controls)";
      unmatched_.push_back({e, msg});
      continue;
    }
    long target = -1;
    for (std::size_t i = 0; i < names.size() && target < 0; ++i) target = find_name(mesh_targets, names[i], true);
    if (target < 0) {
      std::string missing;
      for (std::size_t i = 0; i < names.size(); ++i)
        missing += (i == 0 ? "'" : i + 1 == names.size() ? " or '" : ", '") + names[i] + "'";
      unmatched_.push_back({e, what + (mesh_targets.empty() ? "the mesh has no morph targets"
                                                            : "the mesh has no morph target " + missing)});
      continue;
    }
    const std::string& spelled = mesh_targets[static_cast<std::size_t>(target)];
    long slot = find_name(targets_, spelled, false);
    if (slot < 0) {
      slot = static_cast<long>(targets_.size());
      targets_.push_back(spelled);
    }
    terms_.push_back(Term{static_cast<std::size_t>(control), static_cast<std::size_t>(slot), e.scale});
  }
  for (int k = 0; k < kHeadValues; ++k) head_index_[k] = static_cast<int>(find_name(controls, kHead[k], false));
  goals_.assign(targets_.size(), 0.0f);
  weights_.assign(targets_.size(), 0.0f);
}

void RigMapper::set_smoothing(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0.0)
    throw std::invalid_argument("rig smoothing must be a time >= 0 seconds, got " + std::to_string(seconds));
  tau_ = seconds;
}

void RigMapper::set_rest_after(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0.0)
    throw std::invalid_argument("rig rest_after must be a time >= 0 seconds, got " + std::to_string(seconds));
  rest_after_ = seconds;
}

void RigMapper::set_frame(const float* values, std::size_t count) {
  since_frame_ = 0.0;
  std::fill(goals_.begin(), goals_.end(), 0.0f);
  for (const Term& t : terms_) {
    if (t.control >= count) continue;  // an older or empty rig: this control is not there
    const float v = values[t.control];
    if (std::isfinite(v)) goals_[t.target] += v * t.scale;
  }
  for (float& g : goals_) g = clamp01(g);
  float head[kHeadValues] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (int k = 0; k < kHeadValues; ++k) {
    const int i = head_index_[k];
    if (i >= 0 && static_cast<std::size_t>(i) < count && std::isfinite(values[i])) head[k] = values[i];
  }
  head_goal_ = HeadPose{head[0], head[1], head[2], head[3], head[4]};
  if (tau_ <= 0.0) {
    weights_ = goals_;
    head_ = head_goal_;
  }
}

void RigMapper::rest() { set_frame(nullptr, 0); }

void RigMapper::update(double dt) {
  if (dt > 0.0 && std::isfinite(dt)) {
    since_frame_ += dt;
    if (rest_after_ > 0.0 && since_frame_ >= rest_after_ - 1e-9) {  // (sums of ticks round)
      const double idle = since_frame_;
      rest();  // (resets the timer: keep counting from where it was)
      since_frame_ = idle;
    }
  }
  if (tau_ <= 0.0) {
    weights_ = goals_;
    head_ = head_goal_;
    return;
  }
  if (!(dt > 0.0) || !std::isfinite(dt)) return;
  const float a = static_cast<float>(1.0 - std::exp(-dt / tau_));
  for (std::size_t i = 0; i < weights_.size(); ++i) weights_[i] = clamp01(weights_[i] + a * (goals_[i] - weights_[i]));
  auto step = [a](float& y, float x) { y += a * (x - y); };
  step(head_.yaw, head_goal_.yaw);
  step(head_.pitch, head_goal_.pitch);
  step(head_.roll, head_goal_.roll);
  step(head_.offset_x, head_goal_.offset_x);
  step(head_.offset_y, head_goal_.offset_y);
}

UnrealRotator unreal_rotator(const HeadPose& pose) {
  constexpr float kDegrees = 57.29577951308232f;
  UnrealRotator r;
  r.pitch = -pose.pitch * kDegrees;
  r.yaw = -pose.yaw * kDegrees;
  r.roll = -pose.roll * kDegrees;
  return r;
}

}  // namespace mfruntime
