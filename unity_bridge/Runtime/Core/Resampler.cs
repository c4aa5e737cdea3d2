// Streaming sample-rate conversion (16 kHz protocol PCM → the engine's output rate): band-limited interpolation with
// a Blackman-windowed sinc of HalfTaps input samples a side, tabulated at Phases points per sample. Positions are
// integer ratios (output k sits at input k·inRate/outRate), so feeding audio in pieces gives exactly the same samples
// as feeding it whole, and the output count never drifts from the input count.
using System;

namespace Mfruntime
{
    public sealed class Resampler
    {
        public const int Phases = 256;
        public readonly int InRate, OutRate, HalfTaps;
        private readonly float[] table;  // kernel at x = p / Phases, p = 0 … HalfTaps·Phases (symmetric)
        private readonly float[] weights;
        // Output positions fall on OutRate / gcd(InRate, OutRate) distinct phases (3 for 16 → 48 kHz, 441 for
        // 16 → 44.1 kHz): their normalised weights are computed once each and reused.
        private readonly int phaseStep;
        private readonly float[][] phaseWeights;
        private float[] buf = new float[4096];
        private long bufStart;  // input index of buf[0]
        private int bufLen;
        private long written;  // input samples written since Reset
        private long centre;  // integer part of the next output's input position
        private long frac;  // fractional part × OutRate, in [0, OutRate)

        public Resampler(int inRate, int outRate, int halfTaps = 16)
        {
            if (inRate <= 0 || outRate <= 0) throw new ArgumentException("sample rates must be positive");
            if (halfTaps < 1 || halfTaps > 256) throw new ArgumentException("halfTaps must be 1-256");
            InRate = inRate; OutRate = outRate; HalfTaps = halfTaps;
            double scale = Math.Min(1.0, (double)outRate / inRate);  // lower the cut-off when downsampling
            table = new float[halfTaps * Phases + 2];
            for (int p = 0; p < table.Length; p++)
            {
                double x = (double)p / Phases;
                if (x >= halfTaps) { table[p] = 0; continue; }
                double sx = Math.PI * scale * x;
                double sinc = x == 0 ? 1.0 : Math.Sin(sx) / sx;
                double w = 0.42 + 0.5 * Math.Cos(Math.PI * x / halfTaps) + 0.08 * Math.Cos(2 * Math.PI * x / halfTaps);
                table[p] = (float)(scale * sinc * w);
            }
            weights = new float[2 * halfTaps];
            int g = Gcd(inRate, outRate);
            phaseStep = g;
            if (outRate / g <= 4096) phaseWeights = new float[outRate / g][];
            Reset();
        }

        /// <summary>Forget all input; the next input sample is index 0 and the next output sits on it.</summary>
        public void Reset()
        {
            bufStart = -HalfTaps;  // HalfTaps zeros of history before the first sample
            bufLen = HalfTaps;
            Array.Clear(buf, 0, HalfTaps);
            written = 0; centre = 0; frac = 0;
        }

        /// <summary>Input index of the next output sample's position (its integer part).</summary>
        public long InputPosition { get { return centre; } }

        /// <summary>Input samples written since Reset.</summary>
        public long Written { get { return written; } }

        /// <summary>Outputs that can be made now: each needs HalfTaps input samples past its position.</summary>
        public bool CanRead { get { return centre + HalfTaps < written; } }

        public void Write(float[] src, int offset, int count)
        {
            Trim();
            if (bufLen + count > buf.Length)
            {
                var bigger = new float[Math.Max(buf.Length * 2, bufLen + count)];
                Array.Copy(buf, bigger, bufLen);
                buf = bigger;
            }
            Array.Copy(src, offset, buf, bufLen, count);
            bufLen += count;
            written += count;
        }

        public void WriteSilence(int count)
        {
            Trim();
            if (bufLen + count > buf.Length)
            {
                var bigger = new float[Math.Max(buf.Length * 2, bufLen + count)];
                Array.Copy(buf, bigger, bufLen);
                buf = bigger;
            }
            Array.Clear(buf, bufLen, count);
            bufLen += count;
            written += count;
        }

        /// <summary>One output sample; call only while CanRead.</summary>
        public float ReadOne()
        {
            float[] w;
            if (phaseWeights != null)
            {
                int phase = (int)(frac / phaseStep);
                w = phaseWeights[phase] ?? (phaseWeights[phase] = Weights(frac, new float[2 * HalfTaps]));
            }
            else w = Weights(frac, weights);
            int at = (int)(centre - HalfTaps + 1 - bufStart);
            float acc = 0;
            for (int j = 0; j < w.Length; j++) acc += w[j] * buf[at + j];
            frac += InRate;
            if (frac >= OutRate) { centre += frac / OutRate; frac %= OutRate; }
            return acc;
        }

        /// <summary>The weights of the 2·HalfTaps inputs around position centre + frac/OutRate: output = Σ_m x[m]·k(t − m),
        /// normalised to sum 1 so a constant passes unchanged at every phase.</summary>
        private float[] Weights(long fracNum, float[] into)
        {
            double f = (double)fracNum / OutRate;
            float sum = 0;
            for (int j = 0; j < into.Length; j++)
            {
                double x = Math.Abs((HalfTaps - 1 - j) + f);  // |t − m| for m = centre − HalfTaps + 1 + j
                double pos = x * Phases;
                int p = (int)pos;
                float v = p >= table.Length - 1 ? 0f : table[p] + (float)(pos - p) * (table[p + 1] - table[p]);
                into[j] = v;
                sum += v;
            }
            if (sum != 0) for (int j = 0; j < into.Length; j++) into[j] /= sum;
            return into;
        }

        private static int Gcd(int a, int b)
        {
            while (b != 0) { int t = a % b; a = b; b = t; }
            return a;
        }

        /// <summary>Drop input no longer needed (before the next output's window).</summary>
        private void Trim()
        {
            long keepFrom = centre - HalfTaps + 1;
            int drop = (int)Math.Min(bufLen, Math.Max(0, keepFrom - bufStart));
            if (drop < 2048) return;  // move memory in big steps only
            Array.Copy(buf, drop, buf, 0, bufLen - drop);
            bufLen -= drop;
            bufStart += drop;
        }
    }
}
