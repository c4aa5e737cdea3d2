// Compiles cpp_client/src/protocol.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/protocol.cpp"
#include "../MfrLibEnd.h"
