// The C# Player's cost on the engine's threads: a 20-s line of 64-px chunks pushed (network thread), then played
// at 48 kHz stereo in 1024-frame blocks with a TakeFrame after each (audio thread + frame update). Prints one line:
//   csharp push_us_per_chunk read_us_per_block cpu_fraction_of_real_time
// Run by `python -m benchmarks.bridges --player`.
using System;
using System.Diagnostics;
using System.Linq;
using Mfruntime;

public static class PlayerBench
{
    public static int Main(string[] args)
    {
        int size = args.Length > 0 ? int.Parse(args[0]) : 64, chunks = 125, block = 1024, rate = 48000;
        var pcm = Enumerable.Range(0, 2560).Select(n => (float)Math.Sin(n * 0.05) * 0.5f).ToArray();
        var video = new byte[4 * size * size * 3];
        var line = Enumerable.Range(0, chunks).Select(s => new StreamChunk
        {
            Character = "default", Utterance = 1, Seq = s, Clock = s * 2560L, Pts = s * 2560 / 16000.0, Width = size, Height = size,
            Frames = 4, Fps = 25, SampleRate = 16000, Samples = 2560, Eou = s == chunks - 1, Video = video, Pcm = pcm,
        }).ToArray();
        double bestPush = double.MaxValue, bestRead = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            var p = new Player(new PlayerSettings { OutputRate = rate, PrebufferMs = 0 });
            var w = Stopwatch.StartNew();
            foreach (var c in line) p.Push(c);
            bestPush = Math.Min(bestPush, w.Elapsed.TotalMilliseconds * 1000 / chunks);
            var buf = new float[block * 2];
            int blocks = 0, shown = 0;
            w.Restart();
            PlayerEvent e;
            bool ended = false;
            while (!ended)
            {
                p.ReadAudio(buf, 0, block, 2);
                if (p.TakeFrame() != null) shown++;
                while (p.TryGetEvent(out e)) ended |= e.Kind == PlayerEventKind.UtteranceEnded;
                blocks++;
            }
            bestRead = Math.Min(bestRead, w.Elapsed.TotalMilliseconds * 1000 / blocks);
            if (shown < chunks * 4 / 2) { Console.Error.WriteLine("only " + shown + " frames shown"); return 1; }
        }
        double blockSeconds = (double)block / rate;
        Console.WriteLine("csharp {0:F2} {1:F2} {2:F5}", bestPush, bestRead, bestRead / 1e6 / blockSeconds);
        return 0;
    }
}
