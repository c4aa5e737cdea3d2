// Compiles cpp_client/src/player.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/player.cpp"
#include "../MfrLibEnd.h"
