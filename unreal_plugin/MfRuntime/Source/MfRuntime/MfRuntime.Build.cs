// The MfRuntime module compiles the engine-free C++ client (cpp_client/ in the mfruntime repository) into itself and
// links libzmq. Third-party layout and how to provide libzmq per platform: see README.md next to MfRuntime.uplugin.
using System.IO;
using UnrealBuildTool;

public class MfRuntime : ModuleRules
{
	public MfRuntime(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		CppStandard = CppStandardVersion.Cpp17;
		bEnableExceptions = true;  // the client library reports errors (timeouts, server errors) as exceptions
		bUseUnity = false;         // each client source stays its own translation unit

		PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine" });
		PrivateDependencyModuleNames.AddRange(new string[] { "RenderCore", "RHI" });

		string ThirdParty = Path.GetFullPath(Path.Combine(ModuleDirectory, "..", "ThirdParty"));

		// The client sources: a copy in Source/ThirdParty/cpp_client, else the repository's cpp_client/ (when the plugin
		// is used from a checkout of mfruntime).
		string Client = Path.Combine(ThirdParty, "cpp_client");
		if (!Directory.Exists(Path.Combine(Client, "src")))
		{
			Client = Path.GetFullPath(Path.Combine(PluginDirectory, "..", "..", "cpp_client"));
		}
		if (!File.Exists(Path.Combine(Client, "src", "player.cpp")))
		{
			throw new BuildException("MfRuntime: the C++ client sources were not found. Copy mfruntime's cpp_client/include and " +
				"cpp_client/src to " + Path.Combine(ThirdParty, "cpp_client") + " (see the plugin's README.md).");
		}
		PrivateIncludePaths.Add(Path.Combine(Client, "include"));
		PrivateIncludePaths.Add(Client);  // Private/ClientLib/*.cpp include "src/<file>.cpp"
		PrivateDefinitions.Add("MSGPACK_NO_BOOST=1");

		// Header-only dependencies.
		PrivateIncludePaths.Add(Path.Combine(ThirdParty, "msgpack", "include"));  // msgpack.hpp (msgpack-cxx 4.x)
		PrivateIncludePaths.Add(Path.Combine(ThirdParty, "cppzmq", "include"));   // zmq.hpp (cppzmq 4.8+)

		// libzmq 4.3 (C API), built per platform with CURVE (tweetnacl, no libsodium needed).
		string Zmq = Path.Combine(ThirdParty, "libzmq");
		PrivateIncludePaths.Add(Path.Combine(Zmq, "include"));
		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			PrivateDefinitions.Add("ZMQ_STATIC=1");
			PublicAdditionalLibraries.Add(Path.Combine(Zmq, "Win64", "lib", "libzmq.lib"));
			PublicSystemLibraries.AddRange(new string[] { "ws2_32.lib", "iphlpapi.lib", "advapi32.lib" });
		}
		else if (Target.Platform == UnrealTargetPlatform.Mac)
		{
			PublicAdditionalLibraries.Add(Path.Combine(Zmq, "Mac", "lib", "libzmq.a"));
		}
		else if (Target.Platform == UnrealTargetPlatform.Linux)
		{
			// A shared libzmq keeps its own C++ runtime away from the engine's libc++; it is staged next to the binary.
			string So = Path.Combine(Zmq, "Linux", "lib", "libzmq.so.5");
			PublicAdditionalLibraries.Add(So);
			RuntimeDependencies.Add("$(TargetOutputDir)/libzmq.so.5", So);
		}
		else
		{
			throw new BuildException("MfRuntime: no libzmq set up for " + Target.Platform + " (see README.md)");
		}
	}
}
