#include "MfCharacterComponent.h"

#include <exception>
#include <memory>
#include <string>

#include "Components/AudioComponent.h"
#include "Engine/Texture2D.h"
#include "GameFramework/Actor.h"
#include "MfRuntimeLog.h"
#include "TextureResource.h"

#include "MfrLibBegin.h"
#include "mfruntime/client.hpp"
#include "MfrLibEnd.h"

/** The library's client (with its player); shared with the sound wave, which reads audio on the audio thread. */
struct FMfRuntimeState
{
	std::unique_ptr<mfruntime::Client> Client;
};

namespace
{
std::string Utf8(const FString& S)
{
	return std::string(TCHAR_TO_UTF8(*S));
}

void LogError(const TCHAR* What, const std::exception& E)
{
	UE_LOG(LogMfRuntime, Error, TEXT("%s: %s"), What, UTF8_TO_TCHAR(E.what()));
}
}  // namespace

// --- sound wave -----------------------------------------------------------------------------------------------

UMfSoundWave::UMfSoundWave(const FObjectInitializer& ObjectInitializer) : Super(ObjectInitializer)
{
	NumChannels = 1;
	Duration = INDEFINITELY_LOOPING_DURATION;
	bLooping = false;
	SoundGroup = SOUNDGROUP_Voice;
	SetSampleRate(48000);
}

int32 UMfSoundWave::GeneratePCMData(uint8* PCMData, const int32 SamplesNeeded)
{
	const int32 Channels = FMath::Max(1, NumChannels);
	const int32 Frames = SamplesNeeded / Channels;
	int16* Out = reinterpret_cast<int16*>(PCMData);
	if (Frames <= 0)
	{
		return 0;
	}
	Scratch.SetNumUninitialized(Frames * Channels);
	if (State && State->Client)
	{
		State->Client->player().read_audio(Scratch.GetData(), Frames, Channels);
	}
	else
	{
		FMemory::Memzero(Scratch.GetData(), Scratch.Num() * sizeof(float));
	}
	for (int32 i = 0; i < Frames * Channels; ++i)
	{
		Out[i] = static_cast<int16>(FMath::RoundToInt(FMath::Clamp(Scratch[i], -1.0f, 1.0f) * 32767.0f));
	}
	return Frames * Channels * static_cast<int32>(sizeof(int16));
}

// --- component ------------------------------------------------------------------------------------------------

UMfCharacterComponent::UMfCharacterComponent()
{
	PrimaryComponentTick.bCanEverTick = true;
	PrimaryComponentTick.bStartWithTickEnabled = true;
}

void UMfCharacterComponent::BeginPlay()
{
	Super::BeginPlay();

	mfruntime::ClientConfig Cfg;
	Cfg.control_address = Utf8(ControlAddress);
	Cfg.stream_address = Utf8(StreamAddress);
	Cfg.character = Utf8(Character);
	Cfg.output_rate = OutputRate;
	Cfg.prebuffer_ms = PrebufferMs;
	Cfg.output_latency_ms = OutputLatencyMs;
	Cfg.request_timeout_ms = RequestTimeoutMs;
	Cfg.on_log = [](const std::string& Line) { UE_LOG(LogMfRuntime, Warning, TEXT("%s"), UTF8_TO_TCHAR(Line.c_str())); };

	TSharedPtr<FMfRuntimeState, ESPMode::ThreadSafe> NewState = MakeShared<FMfRuntimeState, ESPMode::ThreadSafe>();
	try
	{
		if (!ServerPublicKeyFile.IsEmpty() || !ClientSecretKeyFile.IsEmpty())
		{
			Cfg.curve = mfruntime::load_curve_keys(Utf8(ServerPublicKeyFile), Utf8(ClientSecretKeyFile));
		}
		NewState->Client = std::make_unique<mfruntime::Client>(Cfg);
		NewState->Client->connect();
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent: cannot connect"), E);
		return;
	}
	State = NewState;

	SoundWave = NewObject<UMfSoundWave>(this);
	SoundWave->NumChannels = 1;
	SoundWave->SetSampleRate(OutputRate);
	SoundWave->State = State;

	AActor* Owner = GetOwner();
	AudioComponent = NewObject<UAudioComponent>(Owner ? static_cast<UObject*>(Owner) : static_cast<UObject*>(this));
	AudioComponent->bAutoActivate = false;
	AudioComponent->SetSound(SoundWave);
	if (Owner && Owner->GetRootComponent())
	{
		AudioComponent->SetupAttachment(Owner->GetRootComponent());
	}
	AudioComponent->RegisterComponent();
	AudioComponent->Play();
	UE_LOG(LogMfRuntime, Log, TEXT("MfCharacterComponent: %s on %s (stream %s)"), *Character, *ControlAddress,
		UTF8_TO_TCHAR(State->Client->stream_address().c_str()));
	if (bListenBetweenLines)
	{
		EnsureIdle();
	}
}

void UMfCharacterComponent::EndPlay(const EEndPlayReason::Type EndPlayReason)
{
	if (AudioComponent)
	{
		AudioComponent->Stop();
	}
	if (State && State->Client)
	{
		State->Client->close();  // the player stays alive for the sound wave until it is collected
	}
	State.Reset();
	Super::EndPlay(EndPlayReason);
}

void UMfCharacterComponent::TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	if (!State || !State->Client)
	{
		return;
	}
	if (bListenBetweenLines && IdleSentAtRestarts != State->Client->client_stats().restarts)
	{
		EnsureIdle();  // a restarted server starts with listening off
	}
	mfruntime::Player& Player = State->Client->player();
	// One frame carries both the pixels and the rig values of the same frame index, due on the audio clock.
	if (std::optional<mfruntime::Frame> Frame = Player.take_frame())
	{
		if (Frame->has_video)
		{
			ShowFrame(Frame->width, Frame->height, Frame->rgb.data());
		}
		if (!Frame->rig.empty())
		{
			RigValues.SetNumUninitialized(static_cast<int32>(Frame->rig.size()));
			FMemory::Memcpy(RigValues.GetData(), Frame->rig.data(), Frame->rig.size() * sizeof(float));
			++RigFramesTaken;
			OnRigFrame.Broadcast(RigValues);
		}
	}
	while (std::optional<mfruntime::PlayerEvent> Event = Player.poll_event())
	{
		if (Event->type == mfruntime::PlayerEvent::Type::UtteranceStarted)
		{
			OnUtteranceStarted.Broadcast(Event->utterance);
		}
		else
		{
			OnUtteranceEnded.Broadcast(Event->utterance, Event->interrupted);
		}
	}
}

void UMfCharacterComponent::ShowFrame(int32 Width, int32 Height, const uint8* Rgb)
{
	if (Width <= 0 || Height <= 0)
	{
		return;
	}
	if (!FrameTexture || FrameTexture->GetSizeX() != Width || FrameTexture->GetSizeY() != Height)
	{
		FrameTexture = UTexture2D::CreateTransient(Width, Height, PF_R8G8B8A8);
		FrameTexture->SRGB = true;
		FrameTexture->Filter = TF_Bilinear;
		FrameTexture->UpdateResource();
		OnFrameTextureCreated.Broadcast(FrameTexture);
	}
	// The render thread frees both when the upload is done.
	const int32 Pixels = Width * Height;
	uint8* Rgba = new uint8[Pixels * 4];
	for (int32 i = 0; i < Pixels; ++i)
	{
		Rgba[4 * i + 0] = Rgb[3 * i + 0];
		Rgba[4 * i + 1] = Rgb[3 * i + 1];
		Rgba[4 * i + 2] = Rgb[3 * i + 2];
		Rgba[4 * i + 3] = 255;
	}
	FUpdateTextureRegion2D* Region = new FUpdateTextureRegion2D(0, 0, 0, 0, Width, Height);
	FrameTexture->UpdateTextureRegions(0, 1, Region, Width * 4, 4, Rgba,
		[](uint8* Data, const FUpdateTextureRegion2D* Regions)
		{
			delete[] Data;
			delete Regions;
		});
}

int64 UMfCharacterComponent::Say(const FString& Text)
{
	if (!State || !State->Client)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("MfCharacterComponent::Say: not connected (BeginPlay failed or EndPlay ran)"));
		return -1;
	}
	EnsureOutputs();
	try
	{
		return State->Client->say(Utf8(Text), Utf8(Voice), Steps);
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent::Say"), E);
		return -1;
	}
}

int64 UMfCharacterComponent::Drive(const TArray<float>& Pcm, int32 SampleRate)
{
	if (!State || !State->Client)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("MfCharacterComponent::Drive: not connected"));
		return -1;
	}
	EnsureOutputs();
	try
	{
		return State->Client->drive(Pcm.GetData(), static_cast<size_t>(Pcm.Num()), SampleRate, Steps);
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent::Drive"), E);
		return -1;
	}
}

void UMfCharacterComponent::Interrupt()
{
	if (!State || !State->Client)
	{
		return;
	}
	try
	{
		State->Client->interrupt();
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent::Interrupt"), E);
	}
}

bool UMfCharacterComponent::SetCharacterFromTexture(UTexture2D* Texture)
{
	if (!Texture || !State || !State->Client)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("MfCharacterComponent::SetCharacterFromTexture: no texture, or not connected"));
		return false;
	}
	FTexturePlatformData* Data = Texture->GetPlatformData();
	if (!Data || Data->Mips.Num() == 0 || Data->PixelFormat != PF_B8G8R8A8)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("SetCharacterFromTexture: %s must be uncompressed BGRA8: set Compression Settings to "
			"'VectorDisplacementmap (RGBA8)' and Mip Gen Settings to 'NoMipmaps'"), *Texture->GetName());
		return false;
	}
	FTexture2DMipMap& Mip = Data->Mips[0];
	const int32 Width = Mip.SizeX;
	const int32 Height = Mip.SizeY;
	const uint8* Bgra = static_cast<const uint8*>(Mip.BulkData.LockReadOnly());
	if (!Bgra || Mip.BulkData.GetBulkDataSize() < static_cast<int64>(Width) * Height * 4)
	{
		Mip.BulkData.Unlock();
		UE_LOG(LogMfRuntime, Error, TEXT("SetCharacterFromTexture: %s has no CPU copy of its pixels (in a packaged game, "
			"send the image file with mfruntime::Client::set_character_image instead)"), *Texture->GetName());
		return false;
	}
	mfruntime::Bytes Rgb(static_cast<size_t>(Width) * Height * 3);
	for (int32 i = 0; i < Width * Height; ++i)
	{
		Rgb[3 * i + 0] = Bgra[4 * i + 2];
		Rgb[3 * i + 1] = Bgra[4 * i + 1];
		Rgb[3 * i + 2] = Bgra[4 * i + 0];
	}
	Mip.BulkData.Unlock();
	try
	{
		State->Client->set_character_rgb(Rgb, Width, Height, Utf8(Voice));
		return true;
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent::SetCharacterFromTexture"), E);
		return false;
	}
}

float UMfCharacterComponent::GetBufferedMs() const
{
	return (State && State->Client) ? static_cast<float>(State->Client->player().buffered_ms()) : 0.0f;
}

bool UMfCharacterComponent::SetOutputs(bool bNewVideo, bool bNewRig)
{
	bVideo = bNewVideo;
	bRig = bNewRig;
	OutputsSentAtRestarts = -1;
	if (!State || !State->Client)
	{
		return true;  // sent before the first Say once connected
	}
	return EnsureOutputs();
}

bool UMfCharacterComponent::EnsureOutputs()
{
	if (!State || !State->Client)
	{
		return false;
	}
	// A restarted server starts with its defaults again: send the settings once per server run.
	const int64 Restarts = State->Client->client_stats().restarts;
	if (OutputsSentAtRestarts == Restarts)
	{
		return true;
	}
	try
	{
		const mfruntime::OutputSettings Now = State->Client->set_outputs(bVideo, bRig);
		OutputsSentAtRestarts = Restarts;
		if (Now.video != bVideo || Now.rig != bRig)
		{
			UE_LOG(LogMfRuntime, Warning, TEXT("MfCharacterComponent: asked for video %d rig %d, the server streams video %d "
				"rig %d (rig false: its model has no rig head)"), bVideo ? 1 : 0, bRig ? 1 : 0, Now.video ? 1 : 0,
				Now.rig ? 1 : 0);
		}
		return true;
	}
	catch (const mfruntime::ServerError& E)
	{
		// Refused (e.g. rig-only with a model without a rig head): asking again would not help.
		OutputsSentAtRestarts = Restarts;
		LogError(TEXT("MfCharacterComponent: set_outputs refused"), E);
		return false;
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent: set_outputs"), E);  // tried again before the next Say/Drive
		return false;
	}
}

bool UMfCharacterComponent::SetIdle(bool bOn)
{
	bListenBetweenLines = bOn;
	IdleSentAtRestarts = -1;
	if (!State || !State->Client)
	{
		return true;  // sent at BeginPlay
	}
	return EnsureIdle();
}

bool UMfCharacterComponent::EnsureIdle()
{
	if (!State || !State->Client)
	{
		return false;
	}
	const int64 Restarts = State->Client->client_stats().restarts;
	// Sent (or tried) once per server run: a failure is logged and not retried every tick (each try waits for the
	// request timeout); SetIdle or the next server restart tries again.
	IdleSentAtRestarts = Restarts;
	try
	{
		State->Client->set_idle(bListenBetweenLines);
		return true;
	}
	catch (const std::exception& E)
	{
		LogError(TEXT("MfCharacterComponent: idle"), E);
		return false;
	}
}
