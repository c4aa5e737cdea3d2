// Drives a rigged character's face from an MfCharacter's rig stream: each frame, the rig frame due on the audio clock
// (MfCharacter.RigFrame) goes through a name map (MfRigNameMap, or the ARKit + OVR viseme presets) onto the
// SkinnedMeshRenderer's blendshapes, smoothed, and optionally turns a head Transform by the rig's head pose. Between
// lines the face eases back to rest. Applied in LateUpdate, after the Animator, so it wins over animated blendshapes
// and adds its head turn on top of the animated pose.
// Not compiled in the repository's CI (there is no Unity there); the mapping and smoothing (RigMap, RigBinding) are
// the engine-free core's, tested with mono.
using System.Collections.Generic;
using UnityEngine;

namespace Mfruntime.Unity
{
    [AddComponentMenu("mfruntime/Mf Rig Driver")]
    public sealed class MfRigDriver : MonoBehaviour
    {
        [Tooltip("The character whose rig frames drive the face; empty = the MfCharacter on this GameObject or a parent.")]
        public MfCharacter character;
        [Tooltip("The mesh with the face blendshapes (a Ready Player Me avatar: Wolf3D_Head). Its unmatched map entries " +
                 "are logged once.")]
        public SkinnedMeshRenderer face;
        [Tooltip("More meshes driven by the same map where they have the same blendshape names (teeth, beard); what they " +
                 "lack is not reported.")]
        public SkinnedMeshRenderer[] alsoDrive = new SkinnedMeshRenderer[0];
        [Tooltip("Which rig controls drive which blendshapes; empty = the ARKit and OVR viseme presets.")]
        public MfRigNameMap nameMap;
        [Tooltip("Smoothing time constant in seconds (0 = none): a blendshape covers 63 % of a change in this time. The rig " +
                 "runs at 25 fps; 0.03-0.06 hides the steps between its frames without blurring the lips.")]
        [Range(0f, 0.5f)] public float smoothingSeconds = 0.04f;

        [Header("Head pose (optional)")]
        [Tooltip("A Transform turned by the rig's head yaw, pitch and roll (the head bone); empty = no head motion.")]
        public Transform head;
        [Tooltip("Whose axes the head turns about: forward (+Z) where the face looks, up (+Y) up, e.g. the avatar's " +
                 "root; empty = this GameObject.")]
        public Transform headReference;
        [Tooltip("Multiplies the head angles (0 = none, 1 = as generated).")]
        [Range(0f, 2f)] public float headPoseWeight = 1f;

        /// <summary>The map resolved against the face mesh (null while disabled or without a face mesh).</summary>
        public RigBinding Binding { get { return bindings.Count > 0 ? bindings[0] : null; } }

        /// <summary>Entries of the map that did not resolve on the face mesh, with the reason.</summary>
        public IReadOnlyList<string> Unmatched { get { return Binding != null ? Binding.Unmatched : new string[0]; } }

        private readonly List<RigBinding> bindings = new List<RigBinding>();
        private readonly List<SkinnedMeshRenderer> meshes = new List<SkinnedMeshRenderer>();
        private readonly List<float[]> fullWeights = new List<float[]>();  // per mesh, per driven blendshape: its 100 %
        private RigFrame applied;
        private bool warnedNoRig;
        private Quaternion headBase, headWritten;
        private bool headWrote;

        private void Reset()
        {
            character = GetComponentInParent<MfCharacter>();
            face = GetComponentInChildren<SkinnedMeshRenderer>();
        }

        private void OnEnable()
        {
            if (character == null) character = GetComponentInParent<MfCharacter>();
            if (character == null)
                Debug.LogWarning("MfRigDriver '" + name + "': no MfCharacter to take rig frames from: set Character", this);
            Rebind();
        }

        private void OnDisable()
        {
            // Leave the face at rest and the head as it was.
            for (int m = 0; m < bindings.Count; m++)
            {
                if (meshes[m] == null) continue;
                for (int k = 0; k < bindings[m].Count; k++) meshes[m].SetBlendShapeWeight(bindings[m].BlendshapeIndex(k), 0f);
            }
            if (head != null && headWrote && head.localRotation == headWritten) head.localRotation = headBase;
            headWrote = false;
            bindings.Clear(); meshes.Clear(); fullWeights.Clear();
            applied = null;
        }

        /// <summary>Resolve the name map against the meshes again (after changing the map, the meshes or their Mesh).</summary>
        public void Rebind()
        {
            bindings.Clear(); meshes.Clear(); fullWeights.Clear();
            applied = null;
            RigMap map = nameMap != null ? nameMap.ToRigMap() : new RigMap(RigPreset.All);
            if (face == null)
            {
                Debug.LogWarning("MfRigDriver '" + name + "': set Face to the SkinnedMeshRenderer with the face blendshapes", this);
                return;
            }
            Bind(map, face, true);
            if (alsoDrive != null)
                foreach (var extra in alsoDrive)
                    if (extra != null && extra != face) Bind(map, extra, false);
        }

        private void Bind(RigMap map, SkinnedMeshRenderer renderer, bool report)
        {
            Mesh mesh = renderer.sharedMesh;
            if (mesh == null)
            {
                Debug.LogWarning("MfRigDriver '" + name + "': '" + renderer.name + "' has no mesh", this);
                return;
            }
            var names = new string[mesh.blendShapeCount];
            for (int i = 0; i < names.Length; i++) names[i] = mesh.GetBlendShapeName(i);
            RigBinding b = map.Bind(names, null, smoothingSeconds);
            if (report)
            {
                if (b.Count == 0)
                    Debug.LogWarning("MfRigDriver '" + name + "': no entry of the name map matches a blendshape of '" + renderer.name +
                                     "' (" + names.Length + " blendshapes): add custom entries to a Rig Name Map (Assets → Create → " +
                                     "mfruntime → Rig Name Map)", this);
                if (b.Unmatched.Count > 0)
                    Debug.LogWarning("MfRigDriver '" + name + "': " + b.Unmatched.Count + " name map entries do not apply to '" + renderer.name +
                                     "':\n" + string.Join("\n", b.Unmatched), this);
                foreach (var e in map.Entries)
                    if (e.Scale == 0f)
                        Debug.LogWarning("MfRigDriver '" + name + "': name map entry " + e + " has scale 0, so it does nothing " +
                                         "(1 passes the value as is)", this);
            }
            var full = new float[b.Count];
            for (int k = 0; k < b.Count; k++)
            {
                int shape = b.BlendshapeIndex(k);
                full[k] = mesh.GetBlendShapeFrameWeight(shape, mesh.GetBlendShapeFrameCount(shape) - 1);  // 100 for most meshes
            }
            bindings.Add(b); meshes.Add(renderer); fullWeights.Add(full);
        }

        private void LateUpdate()
        {
            if (bindings.Count == 0) return;
            // The frame MfCharacter took in Update for the line being heard; between lines (and while the character is
            // disabled) the face goes to rest.
            RigFrame frame = character != null && character.isActiveAndEnabled ? character.RigFrame : null;
            long sounding = character != null ? character.SoundingUtterance : 0;
            if (frame != null && (sounding == 0 || frame.Utterance != sounding)) frame = null;
            if (frame != applied)
            {
                foreach (var b in bindings)
                    if (frame != null) b.SetFrame(frame.Values); else b.SetRest();
                applied = frame;
            }
            WarnWithoutRig();
            float dt = Time.unscaledDeltaTime;  // the voice plays in real time, paused game or not
            for (int m = 0; m < bindings.Count; m++)
            {
                RigBinding b = bindings[m];
                b.SmoothingSeconds = smoothingSeconds;
                b.Step(dt);
                if (meshes[m] == null) continue;
                float[] full = fullWeights[m];
                for (int k = 0; k < b.Count; k++) meshes[m].SetBlendShapeWeight(b.BlendshapeIndex(k), b.Weight(k) * full[k]);
            }
            if (head != null && bindings[0].HasHeadPose) TurnHead(bindings[0]);
        }

        /// <summary>Turn the head by the smoothed head pose, about headReference's axes, on top of its animated pose.</summary>
        private void TurnHead(RigBinding b)
        {
            // If nothing else wrote the head since our last write, start again from the pose we started from (so the
            // turn does not add up frame after frame); otherwise the Animator set a new pose: start from that.
            if (!headWrote || head.localRotation != headWritten) headBase = head.localRotation;
            head.localRotation = headBase;
            Quaternion reference = (headReference != null ? headReference : transform).rotation;
            float x, y, z;
            b.UnityHeadEuler(headPoseWeight, out x, out y, out z);  // the signs are explained and tested in the core
            Quaternion turn = Quaternion.Euler(x, y, z);
            head.rotation = reference * turn * Quaternion.Inverse(reference) * head.rotation;
            headWritten = head.localRotation;
            headWrote = true;
        }

        private void WarnWithoutRig()
        {
            if (warnedNoRig || character == null) return;
            StreamOutputs o = character.Outputs;
            if (o == null || o.Rig) return;
            warnedNoRig = true;
            Debug.LogWarning("MfRigDriver '" + name + "': the server sends no rig frames for character '" + character.character +
                             "' (" + (character.requestRig ? "its model has no rig head: train one with mf train --stage rig" :
                                      "Request Rig is off on the MfCharacter") + ")", this);
        }
    }
}
