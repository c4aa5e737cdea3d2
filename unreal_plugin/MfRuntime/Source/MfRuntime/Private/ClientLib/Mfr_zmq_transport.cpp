// Compiles cpp_client/src/zmq_transport.cpp (the engine-free client library) as part of this module.
#include "CoreMinimal.h"
#include "../MfrLibBegin.h"
#include "src/zmq_transport.cpp"
#include "../MfrLibEnd.h"
