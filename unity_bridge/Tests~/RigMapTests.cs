// The engine-free rig mapping (RigMap, RigBinding): names resolved against a mesh once, sums and clamping, unknown
// names reported, and the exponential smoothing.
using System;
using System.Linq;

namespace Mfruntime.Tests
{
    public static class RigMapTests
    {
        /// <summary>A rig row (RigControls.Names) with the given values set.</summary>
        private static float[] Row(params object[] nameValue)
        {
            var row = new float[RigControls.Names.Length];
            for (int i = 0; i < nameValue.Length; i += 2) row[RigControls.IndexOf((string)nameValue[i])] = Convert.ToSingle(nameValue[i + 1]);
            return row;
        }

        private static float WeightOf(RigBinding b, string blendshape)
        {
            for (int k = 0; k < b.Count; k++) if (b.BlendshapeName(k) == blendshape) return b.Weight(k);
            throw new CheckFailed("'" + blendshape + "' is not driven");
        }

        [Test]
        public static void ControlNamesAreTheProtocolsVersion1List()
        {
            Check.Equal(28, RigControls.Names.Length, "13 face controls and 15 visemes");
            Check.Equal("jawOpen", RigControls.Names[0], "first");
            Check.Equal("headYaw", RigControls.Names[8], "the head pose after the 8 blendshape weights");
            Check.Equal("viseme_sil", RigControls.Names[13], "the visemes after the face");
            Check.Equal("viseme_ou", RigControls.Names[27], "last");
            Check.Equal(28, RigControls.Names.Distinct().Count(), "no name twice");
            Check.Equal(8, RigMap.PresetEntries(RigPreset.ArKit).Count, "ARKit preset: the blendshape weights, not the head pose");
            Check.Equal(15, RigMap.PresetEntries(RigPreset.OvrVisemes).Count, "OVR preset: every viseme");
            Check.True(RigMap.PresetEntries(RigPreset.All).All(e => e.Scale == 1f && e.Target.Split('|')[0] == e.Source), "identity names, scale 1");
        }

        [Test]
        public static void PresetsAndCustomEntriesMapSumAndClamp()
        {
            // A Ready Player Me-like mesh: ARKit names, viseme_I for viseme_ih; one shape with a Maya-style prefix.
            string[] mesh = { "eyeBlinkLeft", "eyeBlinkRight", "JAWOPEN", "mouthSmile", "viseme_sil", "viseme_aa", "viseme_I", "blendShape1.mouthClose" };
            var map = new RigMap(RigPreset.All, new[]
            {
                new RigMapEntry("viseme_aa", "mouthSmile", 0.5f),   // a second source into a target of its own
                new RigMapEntry("viseme_E", "mouthSmile", 0.5f),    // … and a third into the same one
                new RigMapEntry("viseme_aa", "jawOpen", 0.5f),      // a viseme adds into the preset's jawOpen
                new RigMapEntry("eyeBlinkLeft", "eyeBlinkLeft", 2f),  // same source and target as the preset: replaces its scale
                new RigMapEntry("headYaw", "eyeBlinkRight", -1f),   // negative scale: clamped at 0 for a positive yaw
            });
            var b = map.Bind(mesh);
            Check.Equal(8, b.Count, "every shape of the mesh is driven: " +
                                    string.Join(",", Enumerable.Range(0, b.Count).Select(b.BlendshapeName)));
            Check.Equal(2, b.BlendshapeIndex(Enumerable.Range(0, b.Count).First(k => b.BlendshapeName(k) == "JAWOPEN")), "the mesh's own index");
            b.SetFrame(Row("jawOpen", 0.4, "viseme_aa", 0.8, "viseme_E", 0.6, "viseme_ih", 0.3, "mouthClose", 0.9,
                           "eyeBlinkLeft", 0.3, "headYaw", 0.2, "eyeBlinkRight", 0.1));
            b.Step(0.016);  // no smoothing: the weights are the goals at once
            Check.Near(0.4 + 0.5 * 0.8, WeightOf(b, "JAWOPEN"), 1e-6, "jawOpen + 0.5 × viseme_aa (matched whatever the case)");
            Check.Near(0.5 * 0.8 + 0.5 * 0.6, WeightOf(b, "mouthSmile"), 1e-6, "two sources add into one target");
            b.SetFrame(Row("viseme_aa", 1, "viseme_E", 1.5, "jawOpen", 0.9, "headYaw", 0.2, "eyeBlinkRight", 0.1));
            b.Step(0.016);
            Check.Near(1.0, WeightOf(b, "mouthSmile"), 0, "a sum above 1 is clamped to 1");
            Check.Near(1.0, WeightOf(b, "JAWOPEN"), 0, "0.9 + 0.5 clamped to 1");
            Check.Near(0.0, WeightOf(b, "eyeBlinkRight"), 0, "0.1 − 0.2 clamped to 0");
            b.SetFrame(Row("eyeBlinkLeft", 0.3, "viseme_ih", 0.25, "mouthClose", 0.9, "viseme_sil", 1));
            b.Step(0.016);
            Check.Near(0.6, WeightOf(b, "eyeBlinkLeft"), 1e-6, "the custom scale replaced the preset's (not 0.3 + 0.6)");
            Check.Near(0.25, WeightOf(b, "viseme_I"), 1e-6, "viseme_ih drives Ready Player Me's viseme_I");
            Check.Near(0.9, WeightOf(b, "blendShape1.mouthClose"), 1e-6, "a 'prefix.' name matches");
            Check.Near(1.0, WeightOf(b, "viseme_sil"), 1e-6, "identity viseme");
            Check.True(b.HasHeadPose, "the head pose is in the control list");
            b.SetFrame(Row("headYaw", 0.2, "headPitch", -0.1, "headRoll", 0.05, "jawOpen", float.NaN));
            b.Step(0.016);
            Check.True(Math.Abs(b.HeadYaw - 0.2) < 1e-6 && Math.Abs(b.HeadPitch + 0.1) < 1e-6 && Math.Abs(b.HeadRoll - 0.05) < 1e-6, "head pose in radians, not clamped");
            Check.Equal(0f, WeightOf(b, "JAWOPEN"), "NaN counts as 0 (and cannot poison the smoothing)");
            b.SetRest();
            b.Step(0.016);
            Check.True(Enumerable.Range(0, b.Count).All(k => b.Weight(k) == 0) && b.HeadYaw == 0, "rest: every weight 0, the head straight");
            // A server with a longer control list (a newer rig version): names beyond ours are simply not mapped; a
            // frame shorter than the list (an older server) counts the missing values as 0.
            var longer = RigControls.Names.Concat(new[] { "browInnerUp" }).ToArray();
            var c = new RigMap(RigPreset.ArKit, new[] { new RigMapEntry("browInnerUp", "mouthSmile") }).Bind(mesh, longer);
            var row = Row("jawOpen", 0.5).Concat(new[] { 0.75f }).ToArray();
            c.SetFrame(row);
            c.Step(1);
            Check.Near(0.75, WeightOf(c, "mouthSmile"), 1e-6, "a control of a newer list, by name");
            c.SetFrame(new float[] { 0.5f });
            c.Step(1);
            Check.Near(0.5, WeightOf(c, "JAWOPEN"), 1e-6, "a short frame: what it has");
            Check.Near(0.0, WeightOf(c, "mouthSmile"), 0, "and 0 for what it lacks");
        }

        [Test]
        public static void UnknownNamesAreReportedNotDropped()
        {
            string[] mesh = { "jawOpen", "a.mouthOpen", "b.mouthOpen", "Smile", "smile" };
            var map = new RigMap(RigPreset.ArKit, new[]
            {
                new RigMapEntry("jawOpn", "jawOpen"),           // a typo in the source
                new RigMapEntry("viseme_aa", "noSuchShape"),    // a target the mesh lacks
                new RigMapEntry("viseme_aa", "mouthOpen"),      // two shapes match after their prefix
                new RigMapEntry("viseme_E", "SMILE"),           // two match except for case
                new RigMapEntry("viseme_oh", "nope|jawOpen"),   // candidates: the first the mesh has
                new RigMapEntry("", "jawOpen"),
                null,                                            // an empty list slot is skipped
            });
            var b = map.Bind(mesh);
            Check.Equal(1, b.Count, "only jawOpen resolves (from the preset and from viseme_oh)");
            var un = b.Unmatched;
            Check.Equal(7 + 5, un.Count, "7 ARKit preset entries without a shape + 5 bad custom ones: " + string.Join(" / ", un));
            Func<string, string> reason = what => un.FirstOrDefault(u => u.Contains(what)) ?? "";
            Check.True(reason("'jawOpn'").Contains("not a rig control name"), "a typo in the source: " + reason("'jawOpn'"));
            Check.True(reason("'noSuchShape'").Contains("the mesh has no blendshape 'noSuchShape'"), "a missing target: " + reason("'noSuchShape'"));
            Check.True(reason("'mouthOpen'").Contains("several match"), "ambiguous after a prefix: " + reason("'mouthOpen'"));
            Check.True(reason("'SMILE'").Contains("several match"), "ambiguous by case: " + reason("'SMILE'"));
            Check.True(reason("'mouthFunnel'").Contains("no blendshape 'mouthFunnel'"), "preset entries too: " + reason("'mouthFunnel'"));
            Check.True(reason("'' →").Contains("needs both"), "an empty name: " + reason("'' →"));
            b.SetFrame(Row("jawOpen", 0.25, "viseme_oh", 0.5));
            b.Step(0);
            Check.Near(0.75, b.Weight(0), 1e-6, "'nope|jawOpen' fell back to jawOpen and adds in");
            var ovr = new RigMap(RigPreset.OvrVisemes).Bind(new[] { "viseme_sil" });
            Check.True(ovr.Unmatched.Any(u => u.Contains("of these: 'viseme_ih', 'viseme_I'")), "every candidate is named: " + string.Join(" / ", ovr.Unmatched));
            Check.Throws<ArgumentException>(() => new RigMap(RigPreset.None).Bind(mesh, null, -1), "≥ 0", "a negative time constant");
        }

        [Test]
        public static void SmoothingReachesOneMinusOneOverEAfterTheTimeConstant()
        {
            const double tau = 0.08;
            string[] mesh = { "jawOpen" };
            foreach (int steps in new[] { 1, 5, 80 })
            {
                var b = new RigMap(RigPreset.ArKit).Bind(mesh, null, tau);
                b.SetFrame(Row("jawOpen", 1, "headYaw", 0.3));
                b.Step(0);
                Check.Equal(0f, b.Weight(0), "no time, no change");
                for (int i = 0; i < steps; i++) b.Step(tau / steps);
                Check.Near(1 - Math.Exp(-1), b.Weight(0), 1e-5, "step response after τ in " + steps + " steps");
                Check.Near(0.3 * (1 - Math.Exp(-1)), b.HeadYaw, 1e-5, "the head pose smooths alike");
                Check.Near(1.0, b.Goal(0), 0, "the goal is the frame's value");
                for (int i = 0; i < steps; i++) b.Step(tau / steps);
                Check.Near(1 - Math.Exp(-2), b.Weight(0), 1e-5, "after 2τ");
                b.SetRest();
                double from = b.Weight(0);
                b.Step(tau);
                Check.Near(from * Math.Exp(-1), b.Weight(0), 1e-5, "decays to rest the same way");
            }
            var sharp = new RigMap(RigPreset.ArKit).Bind(mesh);
            Check.Equal(0.0, sharp.SmoothingSeconds, "no smoothing unless asked");
            sharp.SetFrame(Row("jawOpen", 0.6));
            sharp.Step(0.001);
            Check.Near(0.6, sharp.Weight(0), 1e-6, "τ = 0 follows at once");
            sharp.SmoothingSeconds = tau;
            sharp.SetFrame(Row("jawOpen", 0));
            sharp.Step(tau);
            Check.Near(0.6 * Math.Exp(-1), sharp.Weight(0), 1e-5, "τ can change while running");
        }

        /// <summary>Unity's Quaternion.Euler(x, y, z) as a matrix (column vectors): Z first, then X, then Y, each the
        /// textbook rotation matrix in Unity's axes (left-handed: X right, Y up, Z forward), as Unity documents it.</summary>
        private static double[] UnityEulerApply(float x, float y, float z, double[] v)
        {
            Func<double[], int, int, double, double[]> rot = (u, a, b, deg) =>
            {
                double r = deg * Math.PI / 180, c = Math.Cos(r), s = Math.Sin(r);
                var o = (double[])u.Clone();
                o[a] = c * u[a] - s * u[b];
                o[b] = s * u[a] + c * u[b];
                return o;
            };
            // About Z: X toward Y. About X: Y toward Z. About Y: Z toward X.
            return rot(rot(rot(v, 0, 1, z), 1, 2, x), 2, 0, y);
        }

        [Test]
        public static void HeadPoseTurnsTheWayTheRigSaysInUnitysAxes()
        {
            double[] forward = { 0, 0, 1 }, up = { 0, 1, 0 };  // the face looks along +Z; its left is −X
            var b = new RigMap(RigPreset.ArKit).Bind(new[] { "jawOpen" });  // no smoothing: the pose is the frame's
            Func<string, double[], double[]> turned = (name, v) =>
            {
                b.SetFrame(Row(name, 0.3));
                b.Step(0.04);
                float x, y, z;
                b.UnityHeadEuler(1f, out x, out y, out z);
                return UnityEulerApply(x, y, z, v);
            };
            Check.True(turned("headYaw", forward)[0] < -0.25, "+ yaw: the face turns to the character's left (−X)");
            Check.True(turned("headPitch", forward)[1] < -0.25, "+ pitch: the face nods down (−Y)");
            Check.True(turned("headRoll", up)[0] < -0.25, "+ roll: the top of the head tips to the character's left, the viewer's right (−X)");
            b.SetRest();
            b.Step(0.04);
            float x0, y0, z0;
            b.UnityHeadEuler(1f, out x0, out y0, out z0);
            Check.True(x0 == 0 && y0 == 0 && z0 == 0, "rest: no turn");
        }
    }
}
