// Compiles cpp_client/src/client.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/client.cpp"
#include "../MfrLibEnd.h"
