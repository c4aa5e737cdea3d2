// The names of the rig stream's values (docs/PROTOCOL.md, the rig part; the server's list is mfruntime/rig.py's
// CONTROLS and ping → rig.controls). Value c of a rig row is the c-th name. The list only grows at its end, with a new
// version, so a client that knows version 1 reads these 28 names and ignores values beyond them.
using System;

namespace Mfruntime
{
    public static class RigControls
    {
        /// <summary>The version of the control list below (the stream header's rig_version).</summary>
        public const int Version = 1;

        /// <summary>Face controls, ARKit-named: the first 8 (BlendshapeFaceControls) are blendshape weights 0–1; then the
        /// head pose in radians (headYaw + = the subject turns to their left, headPitch + = nods down, headRoll + =
        /// tilts to the image's right) and the head offset in face widths (+ = image right, down).</summary>
        public static readonly string[] Face =
        {
            "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft", "mouthStretchRight",
            "eyeBlinkLeft", "eyeBlinkRight", "headYaw", "headPitch", "headRoll", "headOffsetX", "headOffsetY",
        };

        /// <summary>How many of Face are blendshape weights (0–1).</summary>
        public const int BlendshapeFaceControls = 8;

        /// <summary>The 15 OVR (Oculus / Meta Lipsync) viseme weights, in their conventional order; a frame's sum to 1.</summary>
        public static readonly string[] Visemes =
        {
            "viseme_sil", "viseme_PP", "viseme_FF", "viseme_TH", "viseme_DD", "viseme_kk", "viseme_CH", "viseme_SS",
            "viseme_nn", "viseme_RR", "viseme_aa", "viseme_E", "viseme_ih", "viseme_oh", "viseme_ou",
        };

        /// <summary>Every name of version 1, in the order of a rig row: Face, then Visemes.</summary>
        public static readonly string[] Names = Concat(Face, Visemes);

        /// <summary>The position of <paramref name="name"/> in a rig row, or -1.</summary>
        public static int IndexOf(string name) { return Array.IndexOf(Names, name); }

        private static string[] Concat(string[] a, string[] b)
        {
            var all = new string[a.Length + b.Length];
            a.CopyTo(all, 0);
            b.CopyTo(all, a.Length);
            return all;
        }
    }
}
