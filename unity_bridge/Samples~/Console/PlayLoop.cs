// Console sample (no Unity needed): what an engine integration does each frame, in a plain loop. Says a line, pulls
// the voice at 48 kHz stereo in 1024-frame blocks paced to real time (the engine's audio callback), takes the due
// face frame after each block (the engine's frame update), and prints the player's events and counts.
//   mcs -out:PlayLoop.exe -r:Mfruntime.Core.dll PlayLoop.cs
//   mono PlayLoop.exe "Hello there." [tcp://127.0.0.1:5555]
using System;
using System.Diagnostics;
using System.Threading;
using Mfruntime;

public static class PlayLoop
{
    public static int Main(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: PlayLoop.exe TEXT [CONTROL_ADDRESS]");
            return 2;
        }
        const int rate = 48000, channels = 2, block = 1024;
        var settings = new ClientSettings
        {
            ControlAddress = args.Length > 1 ? args[1] : "tcp://127.0.0.1:5555",
            Player = new PlayerSettings { OutputRate = rate },  // the engine's output rate
        };
        using (var client = new MfClient(settings))
        {
            client.Connect();
            try { client.Ping(); }  // the connection is up; the stream subscription needs a moment more
            catch (Exception e) when (e is TransportException || e is TimeoutException)
            {
                Console.Error.WriteLine("PlayLoop: " + e.Message);
                return 1;
            }
            Thread.Sleep(200);
            long line;
            try { line = client.Say(args[0]); }
            catch (Exception e) when (e is ServerException || e is ArgumentException || e is TimeoutException)
            {
                Console.Error.WriteLine("PlayLoop: " + e.Message);
                return 1;
            }
            var audio = new float[block * channels];  // interleaved; ReadAudio's count is frames per channel
            int shown = 0;
            var clock = Stopwatch.StartNew();
            for (long played = 0; clock.Elapsed.TotalSeconds < 60; played += block)
            {
                // Audio callback: fills the block (silence while nothing plays).
                client.Player.ReadAudio(audio, 0, block, channels);
                // Frame update: the newest frame the voice has reached, or null when the shown one stays.
                VideoFrame frame = client.Player.TakeFrame();
                if (frame != null) shown++;  // an engine uploads frame.Rgb (Width × Height × 3, rows top first)
                PlayerEvent e;
                bool done = false;
                while (client.Player.TryGetEvent(out e))
                {
                    Console.WriteLine(clock.ElapsedMilliseconds + " ms: " + e);
                    done |= e.Kind == PlayerEventKind.UtteranceEnded && e.Utterance == line;
                }
                if (done) break;
                var due = TimeSpan.FromSeconds((double)(played + block) / rate) - clock.Elapsed;  // real-time pacing
                if (due > TimeSpan.Zero) Thread.Sleep(due);
            }
            Console.WriteLine("frames shown: " + shown + "; " + client.Player.Stats);
        }
        return 0;
    }
}
