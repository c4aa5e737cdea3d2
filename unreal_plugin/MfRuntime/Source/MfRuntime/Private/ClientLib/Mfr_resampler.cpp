// Compiles cpp_client/src/resampler.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/resampler.cpp"
#include "../MfrLibEnd.h"
