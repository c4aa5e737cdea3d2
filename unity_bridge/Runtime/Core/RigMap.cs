// Rig frames → a character's blendshapes, engine-free (the Unity component MfRigDriver is a thin shell over this).
//  - RigMap: the name map, rig control names → blendshape names with a scale each; presets (ARKit face controls,
//    OVR visemes) plus custom entries. Several sources may add into one target.
//  - RigBinding: the map resolved once against the stream's control names and a mesh's blendshape names (entries that
//    do not resolve are listed in Unmatched, never dropped silently), then per frame: each target's goal (the sum of
//    scale × value, clamped to 0–1) and its weight, smoothed toward the goal with a time constant:
//    y += (1 − exp(−dt/τ))·(x − y); τ = 0 follows the goal at once. The head pose (radians) is smoothed the same way.
using System;
using System.Collections.Generic;

namespace Mfruntime
{
    /// <summary>One line of a name map: rig control Source, times Scale, is added into blendshape Target.</summary>
    [Serializable]
    public sealed class RigMapEntry
    {
        /// <summary>A rig control name (RigControls.Names), e.g. "jawOpen" or "viseme_aa".</summary>
        public string Source;
        /// <summary>The blendshape name on the mesh; several candidates separated by '|': the first the mesh has is used.</summary>
        public string Target;
        /// <summary>Multiplies the value before it is added into the target (1 = as is; negative inverts).</summary>
        public float Scale = 1f;

        public RigMapEntry() { }

        public RigMapEntry(string source, string target, float scale = 1f)
        {
            Source = source; Target = target; Scale = scale;
        }

        public override string ToString()
        {
            return "'" + Source + "' → '" + Target + "'" + (Scale == 1f ? "" : " × " + Scale);
        }
    }

    /// <summary>Ready-made entries of a name map (combine them with |).</summary>
    [Flags]
    public enum RigPreset
    {
        None = 0,
        /// <summary>The 8 ARKit blendshape controls onto blendshapes of the same names (jawOpen → jawOpen, …).</summary>
        ArKit = 1,
        /// <summary>The 15 OVR visemes onto viseme_* blendshapes of the same names, the Oculus Lipsync / Ready Player Me
        /// convention (Ready Player Me names three of them viseme_I, viseme_O, viseme_U: those are tried too).</summary>
        OvrVisemes = 2,
        All = ArKit | OvrVisemes,
    }

    /// <summary>A name map: presets plus custom entries, in order.</summary>
    public sealed class RigMap
    {
        private readonly List<RigMapEntry> entries;

        public RigMap(RigPreset presets, IEnumerable<RigMapEntry> custom = null)
        {
            entries = PresetEntries(presets);
            if (custom == null) return;
            foreach (var e in custom)
                if (e != null) entries.Add(new RigMapEntry(e.Source, e.Target, e.Scale));  // copied: later edits don't leak in
        }

        /// <summary>The preset entries first, then the custom ones.</summary>
        public IReadOnlyList<RigMapEntry> Entries { get { return entries; } }

        /// <summary>The entries of <paramref name="presets"/>.</summary>
        public static List<RigMapEntry> PresetEntries(RigPreset presets)
        {
            var list = new List<RigMapEntry>();
            if ((presets & RigPreset.ArKit) != 0)
                for (int i = 0; i < RigControls.BlendshapeFaceControls; i++) list.Add(new RigMapEntry(RigControls.Face[i], RigControls.Face[i]));
            if ((presets & RigPreset.OvrVisemes) != 0)
                foreach (string v in RigControls.Visemes)
                    list.Add(new RigMapEntry(v, v == "viseme_ih" ? "viseme_ih|viseme_I" : v == "viseme_oh" ? "viseme_oh|viseme_O" :
                                                v == "viseme_ou" ? "viseme_ou|viseme_U" : v));
            return list;
        }

        /// <summary>Resolve the map once against the names of the stream's rig values (RigControls.Names when null) and
        /// the blendshape names of the target mesh (index = the mesh's blendshape index).</summary>
        public RigBinding Bind(IList<string> blendshapes, IList<string> controls = null, double smoothingSeconds = 0)
        {
            return new RigBinding(this, controls ?? RigControls.Names, blendshapes, smoothingSeconds);
        }
    }

    /// <summary>A name map resolved against one mesh, with its smoothing state. Not thread-safe: use it from one thread
    /// (the engine's main thread).</summary>
    public sealed class RigBinding
    {
        private struct Term
        {
            public int Source, Target;  // index in a rig row, index into the targets
            public float Scale;
        }

        private readonly Term[] terms;
        private readonly int[] blendshapeIndex;
        private readonly string[] blendshapeName;
        private readonly float[] goal, weight;
        private readonly int[] headSource = { -1, -1, -1 };  // headYaw, headPitch, headRoll in a rig row
        private readonly float[] headGoal = new float[3], head = new float[3];
        private readonly List<string> unmatched = new List<string>();
        private double tau;

        internal RigBinding(RigMap map, IList<string> controls, IList<string> blendshapes, double smoothingSeconds)
        {
            if (blendshapes == null) throw new ArgumentNullException(nameof(blendshapes), "the mesh's blendshape names are needed to resolve the map");
            SmoothingSeconds = smoothingSeconds;
            var targets = new List<int>();  // blendshape index of each target
            var list = new List<Term>();
            foreach (var e in map.Entries)
            {
                if (string.IsNullOrEmpty(e.Source) || string.IsNullOrEmpty(e.Target))
                {
                    unmatched.Add(e + ": an entry needs both a source (rig control) and a target (blendshape) name");
                    continue;
                }
                int src = Find(controls, e.Source);
                if (src < 0)
                {
                    unmatched.Add(e + (src == Ambiguous ? ": several rig controls match '" + e.Source + "' except for case: write it exactly"
                                                        : ": '" + e.Source + "' is not a rig control name (RigControls.Names: jawOpen, …, viseme_ou)"));
                    continue;
                }
                string[] candidates = e.Target.Split('|');
                int shape = -1;
                bool ambiguous = false;
                foreach (string c in candidates)
                {
                    if ((shape = FindBlendshape(blendshapes, c.Trim())) >= 0) break;
                    ambiguous |= shape == Ambiguous;
                }
                if (shape < 0)
                {
                    unmatched.Add(e + ": the mesh has no blendshape " + (candidates.Length == 1 ? "'" + e.Target + "'" :
                                  "of these: '" + string.Join("', '", candidates) + "'") +
                                  (ambiguous ? " (several match except for case or a 'prefix.': write the mesh's name exactly)" : ""));
                    continue;
                }
                int t = targets.IndexOf(shape);
                if (t < 0) { t = targets.Count; targets.Add(shape); }
                // A later entry for the same source and blendshape replaces the earlier one (a custom scale for a preset).
                int same = list.FindIndex(x => x.Source == src && x.Target == t);
                var term = new Term { Source = src, Target = t, Scale = e.Scale };
                if (same >= 0) list[same] = term; else list.Add(term);
            }
            terms = list.ToArray();
            blendshapeIndex = targets.ToArray();
            blendshapeName = new string[targets.Count];
            for (int k = 0; k < targets.Count; k++) blendshapeName[k] = blendshapes[targets[k]];
            goal = new float[targets.Count];
            weight = new float[targets.Count];
            string[] pose = { "headYaw", "headPitch", "headRoll" };
            for (int i = 0; i < 3; i++) headSource[i] = Find(controls, pose[i]);
        }

        /// <summary>Entries that did not resolve, each with the reason (unknown control, no such blendshape).</summary>
        public IReadOnlyList<string> Unmatched { get { return unmatched; } }

        /// <summary>The smoothing time constant τ in seconds (0 = none): after τ a step has moved 1 − 1/e (63 %).</summary>
        public double SmoothingSeconds
        {
            get { return tau; }
            set
            {
                if (double.IsNaN(value) || value < 0) throw new ArgumentException("the smoothing time constant must be ≥ 0 seconds, got " + value);
                tau = value;
            }
        }

        /// <summary>Blendshapes this binding drives.</summary>
        public int Count { get { return blendshapeIndex.Length; } }

        /// <summary>The mesh's index of driven blendshape <paramref name="k"/> (0 ≤ k &lt; Count).</summary>
        public int BlendshapeIndex(int k) { return blendshapeIndex[k]; }

        public string BlendshapeName(int k) { return blendshapeName[k]; }

        /// <summary>The smoothed weight of driven blendshape k, 0–1 (Unity's SetBlendShapeWeight wants 0–100).</summary>
        public float Weight(int k) { return weight[k]; }

        /// <summary>Where blendshape k is heading: the latest frame's sum of scale × value, clamped to 0–1.</summary>
        public float Goal(int k) { return goal[k]; }

        /// <summary>The control list has the head pose (headYaw, headPitch, headRoll).</summary>
        public bool HasHeadPose { get { return headSource[0] >= 0 && headSource[1] >= 0 && headSource[2] >= 0; } }

        /// <summary>Smoothed head pose in radians (see RigControls.Face for the signs); 0 without it.</summary>
        public float HeadYaw { get { return head[0]; } }
        public float HeadPitch { get { return head[1]; } }
        public float HeadRoll { get { return head[2]; } }

        /// <summary>The smoothed head pose as the Euler angles (degrees) of Unity's <c>Quaternion.Euler(x, y, z)</c>, for a
        /// head whose frame has +Z where the face looks and +Y up, scaled by <paramref name="weight"/>. Unity is
        /// left-handed (X right, Y up, Z forward) and turns Z, then X, then Y: + y turns the face toward +X (the
        /// character's right), so the rig's yaw (+ = to the character's left) is negated; + x turns the face down, as the
        /// rig's pitch; + z tips the top of the head toward −X (the character's left, the viewer's right), as the rig's
        /// roll. Checked in the tests with Unity's documented rotation matrices.</summary>
        public void UnityHeadEuler(float weight, out float x, out float y, out float z)
        {
            float w = weight * (float)(180.0 / Math.PI);
            x = head[1] * w;
            y = -head[0] * w;
            z = head[2] * w;
        }

        /// <summary>Set the goals from one rig frame (a row of the stream's rig values). Values the frame does not have
        /// (a shorter control list) count as 0, and so do NaN and infinities.</summary>
        public void SetFrame(float[] values)
        {
            if (values == null) { SetRest(); return; }
            Array.Clear(goal, 0, goal.Length);
            foreach (var t in terms) goal[t.Target] += t.Scale * Value(values, t.Source);
            for (int k = 0; k < goal.Length; k++) goal[k] = Math.Max(0f, Math.Min(1f, goal[k]));
            for (int i = 0; i < 3; i++) headGoal[i] = Value(values, headSource[i]);
        }

        /// <summary>Goals for the rest pose: every driven blendshape 0, the head straight (between lines, after a cut).</summary>
        public void SetRest()
        {
            Array.Clear(goal, 0, goal.Length);
            Array.Clear(headGoal, 0, headGoal.Length);
        }

        /// <summary>Move the weights toward the goals over <paramref name="dt"/> seconds (the engine's frame time).</summary>
        public void Step(double dt)
        {
            float a = tau <= 0 ? 1f : dt <= 0 ? 0f : (float)(1.0 - Math.Exp(-dt / tau));
            for (int k = 0; k < weight.Length; k++) weight[k] += a * (goal[k] - weight[k]);
            for (int i = 0; i < 3; i++) head[i] += a * (headGoal[i] - head[i]);
        }

        private static float Value(float[] values, int i)
        {
            if (i < 0 || i >= values.Length) return 0f;
            float v = values[i];
            return float.IsNaN(v) || float.IsInfinity(v) ? 0f : v;
        }

        private const int Ambiguous = -2;

        /// <summary>Exact name, else the only case-insensitive match; -1 when none, Ambiguous when several.</summary>
        private static int Find(IList<string> names, string name)
        {
            int at = names.IndexOf(name);
            return at >= 0 ? at : Only(names, n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase));
        }

        /// <summary>Exact, else the only case-insensitive match, else the only name whose part after its last '.' matches
        /// (FBX files from Maya name blendshapes "blendShape1.jawOpen").</summary>
        private static int FindBlendshape(IList<string> names, string name)
        {
            if (name.Length == 0) return -1;
            int at = Find(names, name);
            return at != -1 ? at : Only(names, n => n != null && string.Equals(n.Substring(n.LastIndexOf('.') + 1), name, StringComparison.OrdinalIgnoreCase));
        }

        private static int Only(IList<string> names, Predicate<string> match)
        {
            int found = -1;
            for (int i = 0; i < names.Count; i++)
            {
                if (names[i] == null || !match(names[i])) continue;
                if (found >= 0) return Ambiguous;  // the entry must name it exactly
                found = i;
            }
            return found;
        }
    }
}
