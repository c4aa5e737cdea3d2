// The rig stream's control names (docs/PROTOCOL.md, mfruntime/rig.py) and an engine-free mapping of rig frames onto
// a mesh's morph targets: a name map with a scale per entry, resolved once against the mesh's morph target names,
// with per-target exponential smoothing. An engine only sets the resulting weights (Unreal: SetMorphTarget).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "mfruntime/protocol.hpp"
#include "mfruntime/value.hpp"

namespace mfruntime {

/// The names of the rig values of rig version kRigVersion, in order: 13 face controls (ARKit names; the first 8 are
/// blendshape weights 0–1, then headYaw / headPitch / headRoll in radians and headOffsetX / headOffsetY in face
/// widths), then the 15 OVR viseme weights `viseme_sil` … `viseme_ou` (they sum to 1). A newer rig version only
/// appends names, so these indices stay valid.
const std::vector<std::string>& rig_controls();
/// The 8 face controls that are blendshape weights: jawOpen … eyeBlinkRight.
const std::vector<std::string>& rig_blendshape_controls();
/// The 15 OVR viseme controls: viseme_sil, viseme_PP, … viseme_ou.
const std::vector<std::string>& rig_viseme_controls();
/// Index of a control in rig_controls(), or -1.
int rig_control_index(const std::string& name);

/// A `ping` reply's rig.controls (the server's names, in order); empty when the reply has none (an older server).
std::vector<std::string> rig_controls_from_ping(const Value& reply);

/// One line of a RigMap: rig control `control` drives morph target `target` with weight value × scale. `target` may
/// list several spellings separated by '|' ("viseme_ih|viseme_I"): the first one the mesh has is used.
struct RigMapEntry {
  std::string control;
  std::string target;
  float scale = 1.0f;
};

/// Which rig controls drive which morph targets. Several entries may drive one target: their scaled values add up
/// and the sum is clamped to 0–1.
class RigMap {
 public:
  RigMap& add(std::string control, std::string target, float scale = 1.0f);
  /// ARKit preset: the 8 blendshape face controls (jawOpen …) onto morph targets of the same names (with a prefix,
  /// e.g. "ARKit_"). The head pose is not a blendshape: see RigMapper::head_pose().
  RigMap& add_arkit(float scale = 1.0f, const std::string& target_prefix = "");
  /// OVR visemes preset: viseme_sil … viseme_ou onto morph targets of the same names (with a prefix); for viseme_ih,
  /// viseme_oh and viseme_ou the Ready Player Me names viseme_I, viseme_O and viseme_U are tried too.
  RigMap& add_ovr_visemes(float scale = 1.0f, const std::string& target_prefix = "");
  static RigMap arkit() { return RigMap().add_arkit(); }
  static RigMap ovr_visemes() { return RigMap().add_ovr_visemes(); }

  const std::vector<RigMapEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<RigMapEntry> entries_;
};

/// An entry a RigMapper could not use, and why (one sentence, for a log).
struct RigMapIssue {
  RigMapEntry entry;
  std::string message;
};

/// The head pose of a rig frame: yaw (+ = the subject turns to their left), pitch (+ = nods down), roll (+ = tilts to
/// the image's right) in radians; offset x (+ = image right) and y (+ = down) in face widths.
struct HeadPose {
  float yaw = 0.0f, pitch = 0.0f, roll = 0.0f;
  float offset_x = 0.0f, offset_y = 0.0f;
};

/// Rotator angles in degrees, in Unreal's convention (FRotator's pitch, yaw, roll).
struct UnrealRotator {
  float pitch = 0.0f, yaw = 0.0f, roll = 0.0f;
};

/// The head pose as an Unreal rotator for a head that faces +X with +Z up. Unreal is left-handed (X forward, Y right,
/// Z up): + yaw turns X toward +Y (the character's right), + pitch turns X up, + roll tips Z toward +Y (the
/// character's right). The rig's signs are the other way round on all three axes. Tested with Unreal's rotation
/// matrix (FRotationMatrix), written out in tests/test_rig.cpp.
UnrealRotator unreal_rotator(const HeadPose& pose);

/// A RigMap resolved once against one mesh's morph target names. A target matches exactly, or else ignoring ASCII
/// case (as Unreal's FName does); of several spellings ('|') the first the mesh has wins. Entries naming an unknown
/// control or a missing target are left out and reported in unmatched(), never dropped silently. Then, per game
/// tick: set_frame() with the rig frame that is due (or rest()), update(dt), and apply weights() to targets().
///
/// Smoothing: per target, y += (1 − exp(−dt/τ))·(x − y), with τ = smoothing seconds (0: none, the weights follow
/// the frames at once). It does not depend on the tick rate: a step reaches 1 − e⁻¹ of its size after τ, in one
/// update or many. The head pose is smoothed the same way. Not thread-safe: one game thread uses it.
class RigMapper {
 public:
  RigMapper() = default;  // maps nothing
  /// `controls`: the names of the frames' values (rig_controls(), or a ping reply's rig.controls).
  RigMapper(const RigMap& map, const std::vector<std::string>& mesh_targets,
            const std::vector<std::string>& controls = rig_controls(), double smoothing_seconds = 0.0);

  /// The morph targets driven, as the mesh spells them, in the order of their first entry.
  const std::vector<std::string>& targets() const { return targets_; }
  const std::vector<RigMapIssue>& unmatched() const { return unmatched_; }
  /// Entries in use (of the map's entries, those not in unmatched()).
  std::size_t matched() const { return terms_.size(); }

  /// τ in seconds (0: no smoothing). Throws std::invalid_argument when negative or not finite.
  void set_smoothing(double seconds);
  double smoothing() const { return tau_; }
  /// When update() has run this long since the last set_frame(), the goal becomes the rest pose (rest()): the face
  /// relaxes when no frame comes (the line ended or was cut, or playback stalls). 0 (the default): never.
  /// Throws std::invalid_argument when negative or not finite.
  void set_rest_after(double seconds);
  double rest_after() const { return rest_after_; }

  /// The values of a new rig frame, named by the constructor's `controls`. Fewer values (an older rig version, or
  /// none: a chunk without a rig) leave the missing controls at 0; values beyond the names are ignored; a value that
  /// is not finite counts as 0. The weights move towards it in update() (at once when the smoothing is 0).
  void set_frame(const float* values, std::size_t count);
  void set_frame(const std::vector<float>& values) { set_frame(values.data(), values.size()); }
  /// The rest pose: every target 0 and the head pose 0 (e.g. when a line ends).
  void rest();
  /// Advances the smoothing (and the rest_after timer) by dt seconds (dt ≤ 0 changes nothing).
  void update(double dt_seconds);

  /// Per target (targets() order): the smoothed weight, 0–1.
  const std::vector<float>& weights() const { return weights_; }
  /// Per target: the weight of the latest frame (clamped sum), before smoothing.
  const std::vector<float>& goals() const { return goals_; }
  HeadPose head_pose() const { return head_; }

 private:
  struct Term {
    std::size_t control;
    std::size_t target;
    float scale;
  };
  static constexpr int kHeadValues = 5;  // yaw, pitch, roll, offset x, offset y

  std::vector<std::string> targets_;
  std::vector<Term> terms_;
  std::vector<RigMapIssue> unmatched_;
  std::vector<float> goals_, weights_;
  int head_index_[kHeadValues] = {-1, -1, -1, -1, -1};
  HeadPose head_goal_, head_;
  double tau_ = 0.0;
  double rest_after_ = 0.0;
  double since_frame_ = 0.0;  // seconds of update() since the last set_frame()
};

}  // namespace mfruntime
