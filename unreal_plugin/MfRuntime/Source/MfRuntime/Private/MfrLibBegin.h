// Include before the client library or its third-party headers (libzmq, cppzmq, msgpack-cxx), with MfrLibEnd.h
// after: third-party warnings off, Windows types allowed, the engine's check/verify macros set aside.
// No include guard on purpose: it is used once per inclusion site.
THIRD_PARTY_INCLUDES_START
#pragma push_macro("check")
#pragma push_macro("verify")
#undef check
#undef verify
#if PLATFORM_WINDOWS
#include "Windows/AllowWindowsPlatformTypes.h"
#endif
