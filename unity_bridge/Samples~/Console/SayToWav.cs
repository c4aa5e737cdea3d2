// Console sample (no Unity needed): connect to mf serve, say a line, write what comes back to a WAV file and print
// the time from Say to the first chunk.
//   mcs -out:SayToWav.exe -r:Mfruntime.Core.dll SayToWav.cs
//   mono SayToWav.exe "Hello there." hello.wav [tcp://127.0.0.1:5555]
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using Mfruntime;

public static class SayToWav
{
    public static int Main(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: SayToWav.exe TEXT OUT.wav [CONTROL_ADDRESS]");
            return 2;
        }
        var settings = new ClientSettings { ControlAddress = args.Length > 2 ? args[2] : "tcp://127.0.0.1:5555", RequestTimeoutMs = 60000 };
        var chunks = new List<StreamChunk>();
        var arrivedMs = new List<double>();
        var done = new ManualResetEventSlim(false);
        long utterance = -1;
        var clock = new Stopwatch();
        using (var client = new MfClient(settings))
        {
            client.ChunkReceived += c =>
            {
                lock (chunks)
                {
                    chunks.Add(c);  // chunks may arrive before Say returns the utterance id
                    arrivedMs.Add(clock.Elapsed.TotalMilliseconds);
                    if (c.Eou && (utterance < 0 || c.Utterance >= utterance)) done.Set();
                }
            };
            client.Log += Console.Error.WriteLine;
            client.Connect();
            try { client.Ping(); }
            catch (Exception e) when (e is TransportException || e is TimeoutException)
            {
                Console.Error.WriteLine("SayToWav: " + e.Message);
                return 1;
            }
            Thread.Sleep(200);  // let the stream subscription reach the server
            clock.Start();
            try { utterance = client.Say(args[0]); }
            catch (Exception e) when (e is ServerException || e is ArgumentException || e is TimeoutException || e is TransportException)
            {
                Console.Error.WriteLine("SayToWav: " + e.Message);
                return 1;
            }
            if (!done.Wait(TimeSpan.FromSeconds(120)))
            {
                Console.Error.WriteLine("SayToWav: the line did not end within 120 s");
                return 1;
            }
        }
        var pcm = new List<float>();
        int rate = 16000;
        double firstMs = -1;
        lock (chunks)
            for (int i = 0; i < chunks.Count; i++)
                if (chunks[i].Utterance == utterance)
                {
                    if (firstMs < 0) firstMs = arrivedMs[i];
                    pcm.AddRange(chunks[i].Pcm);
                    rate = chunks[i].SampleRate;
                }
        WriteWav(args[1], pcm, rate);
        int n = chunks.FindAll(c => c.Utterance == utterance).Count;
        Console.WriteLine("utterance " + utterance + ": " + n + " chunks, " + (pcm.Count / (double)rate).ToString("F2") + " s of audio -> " + args[1]);
        Console.WriteLine("time to first chunk: " + firstMs.ToString("F1") + " ms");
        return 0;
    }

    /// <summary>16-bit PCM mono WAV.</summary>
    private static void WriteWav(string path, List<float> pcm, int rate)
    {
        using (var w = new BinaryWriter(File.Create(path)))
        {
            int bytes = pcm.Count * 2;
            w.Write(new[] { 'R', 'I', 'F', 'F' }); w.Write(36 + bytes); w.Write(new[] { 'W', 'A', 'V', 'E' });
            w.Write(new[] { 'f', 'm', 't', ' ' }); w.Write(16); w.Write((short)1); w.Write((short)1);
            w.Write(rate); w.Write(rate * 2); w.Write((short)2); w.Write((short)16);
            w.Write(new[] { 'd', 'a', 't', 'a' }); w.Write(bytes);
            foreach (float v in pcm) w.Write((short)Math.Round(Math.Max(-1f, Math.Min(1f, v)) * 32767));
        }
    }
}
