// mono MfruntimeTests.exe vectors DIR | player | live CONTROL STREAM
using System;

namespace Mfruntime.Tests
{
    public static class Program
    {
        public static int Main(string[] args)
        {
            string mode = args.Length > 0 ? args[0] : "";
            string only = Environment.GetEnvironmentVariable("MF_TEST");
            if (mode == "vectors" && args.Length == 2) return Runner.Run(new[] { typeof(VectorTests) }, args[1], only);
            // The rig tests run as a second group, with their own closing line.
            if (mode == "player" && args.Length == 1)
                return Runner.RunGroups(null, only, new[] { typeof(PlayerTests), typeof(MediaTests) }, new[] { typeof(PlayerRigTests), typeof(RigMapTests) });
            if (mode == "live" && args.Length == 3)
                return Runner.RunGroups(new LiveTests.Server(args[1], args[2]), only, new[] { typeof(LiveTests) }, new[] { typeof(LiveRigTests) });
            Console.Error.WriteLine("usage: MfruntimeTests.exe vectors DIR | player | live CONTROL_ADDRESS STREAM_ADDRESS");
            return 2;
        }
    }
}
