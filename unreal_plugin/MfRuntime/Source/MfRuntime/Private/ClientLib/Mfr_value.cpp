// Compiles cpp_client/src/value.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/value.cpp"
#include "../MfrLibEnd.h"
