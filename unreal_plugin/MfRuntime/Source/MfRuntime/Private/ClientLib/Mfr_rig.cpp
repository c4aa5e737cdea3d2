// Compiles cpp_client/src/rig.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/rig.cpp"
#include "../MfrLibEnd.h"
