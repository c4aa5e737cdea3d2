// The MfRuntime runtime module: no start-up work; everything happens in UMfCharacterComponent.
#include "Modules/ModuleManager.h"

#include "MfRuntimeLog.h"

DEFINE_LOG_CATEGORY(LogMfRuntime);

IMPLEMENT_MODULE(FDefaultModuleImpl, MfRuntime)
