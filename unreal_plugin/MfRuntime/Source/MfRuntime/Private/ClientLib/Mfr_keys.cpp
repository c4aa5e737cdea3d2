// Compiles cpp_client/src/keys.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/keys.cpp"
#include "../MfrLibEnd.h"
