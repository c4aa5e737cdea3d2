// A small test runner for the engine-free core, so the tests run with Debian's mono alone (no NuGet, no Unity).
// Test methods are public static, take no arguments (or the test context) and carry [Test]; each failure is a
// thrown exception. Each group of test classes closes with its line "N passed, N failed".
using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;

namespace Mfruntime.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class TestAttribute : Attribute { }

    public sealed class CheckFailed : Exception
    {
        public CheckFailed(string message) : base(message) { }
    }

    public static class Check
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new CheckFailed(what);
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new CheckFailed(what + ": expected " + expected + ", got " + actual);
        }

        public static void Near(double expected, double actual, double tolerance, string what)
        {
            if (!(Math.Abs(expected - actual) <= tolerance))
                throw new CheckFailed(what + ": expected " + expected + " ± " + tolerance + ", got " + actual);
        }

        public static T Throws<T>(Action action, string messagePart, string what) where T : Exception
        {
            try { action(); }
            catch (T e)
            {
                if (messagePart != null && e.Message.IndexOf(messagePart, StringComparison.OrdinalIgnoreCase) < 0)
                    throw new CheckFailed(what + ": the error '" + e.Message + "' does not mention '" + messagePart + "'");
                return e;
            }
            throw new CheckFailed(what + ": no " + typeof(T).Name + " was raised");
        }
    }

    public static class Runner
    {
        /// <summary>Run every [Test] method of <paramref name="types"/> (or the one named <paramref name="only"/>).</summary>
        public static int Run(Type[] types, object context, string only = null)
        {
            return RunGroups(context, only, types);
        }

        /// <summary>Run each group of test classes in turn, closing each with its own "N passed, N failed" line; the
        /// exit code is 0 when nothing failed and something ran.</summary>
        public static int RunGroups(object context, string only, params Type[][] groups)
        {
            int passed = 0, failed = 0;
            foreach (var group in groups)
            {
                int p, f;
                RunGroup(group, context, only, out p, out f);
                passed += p;
                failed += f;
            }
            return failed == 0 && passed > 0 ? 0 : 1;
        }

        private static void RunGroup(Type[] types, object context, string only, out int passed, out int failed)
        {
            passed = failed = 0;
            var tests = types.SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static)
                                               .Where(m => m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0)
                                               .OrderBy(m => m.MetadataToken));
            foreach (var m in tests)
            {
                var type = m.DeclaringType;
                if (only != null && m.Name != only) continue;
                var started = DateTime.UtcNow;
                try
                {
                    m.Invoke(null, m.GetParameters().Length == 0 ? new object[0] : new[] { context });
                    passed++;
                    Console.WriteLine("PASS " + type.Name + "." + m.Name + " (" + (int)(DateTime.UtcNow - started).TotalMilliseconds + " ms)");
                }
                catch (TargetInvocationException e)
                {
                    failed++;
                    Console.WriteLine("FAIL " + type.Name + "." + m.Name + ": " + e.InnerException);
                }
            }
            Console.WriteLine(passed + " passed, " + failed + " failed");
        }
    }
}
