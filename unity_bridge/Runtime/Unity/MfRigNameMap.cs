// A name map asset: which rig controls drive which blendshapes of a character (Assets → Create → mfruntime → Rig Name
// Map). Presets for the two common conventions plus custom entries; MfRigDriver resolves it against its mesh.
// Not compiled in the repository's CI (there is no Unity there); the mapping it builds (RigMap) is tested with mono.
using System.Collections.Generic;
using UnityEngine;

namespace Mfruntime.Unity
{
    [CreateAssetMenu(fileName = "RigNameMap", menuName = "mfruntime/Rig Name Map")]
    public sealed class MfRigNameMap : ScriptableObject
    {
        [Tooltip("ARKit face controls onto blendshapes of the same names: jawOpen, mouthClose, mouthFunnel, mouthPucker, " +
                 "mouthStretchLeft/Right, eyeBlinkLeft/Right (Ready Player Me, ARKit-rigged characters).")]
        public bool arkit = true;
        [Tooltip("The 15 OVR visemes onto blendshapes of the same names, viseme_sil … viseme_ou (Oculus Lipsync, Ready " +
                 "Player Me; its viseme_I, viseme_O, viseme_U are found too).")]
        public bool ovrVisemes = true;
        [Tooltip("More entries, after the presets. Source: a rig control name (jawOpen, …, headYaw, …, viseme_aa, …). " +
                 "Target: the blendshape's name on the mesh ('a|b': the first the mesh has). Scale multiplies the value " +
                 "(1 = as is). Several entries may add into one blendshape (clamped to 0–1); an entry with the source " +
                 "and target of a preset entry replaces its scale (0 switches it off).")]
        public List<RigMapEntry> entries = new List<RigMapEntry>();

        public RigPreset Presets
        {
            get { return (arkit ? RigPreset.ArKit : RigPreset.None) | (ovrVisemes ? RigPreset.OvrVisemes : RigPreset.None); }
        }

        /// <summary>The engine-free map this asset describes.</summary>
        public RigMap ToRigMap() { return new RigMap(Presets, entries); }
    }
}
