// A character streamed from `mf serve`: its face on a texture, its voice on a procedural sound wave, its rig frames
// (face controls and visemes, for UMfRigComponent) - all on the audio clock. All protocol and playback logic lives in
// the mfruntime C++ client (cpp_client/); this is the glue.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"
#include "Sound/SoundWaveProcedural.h"

#include "MfCharacterComponent.generated.h"

class UAudioComponent;
class UTexture2D;
struct FMfRuntimeState;  // the client and its player (Private/MfCharacterComponent.cpp)

DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FMfUtteranceStarted, int64, Utterance);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FMfUtteranceEnded, int64, Utterance, bool, bInterrupted);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FMfFrameTextureCreated, UTexture2D*, Texture);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FMfRigFrame, const TArray<float>&, Values);

/** A procedural sound wave whose PCM comes from the character's player (resampled, on the audio clock). */
UCLASS()
class MFRUNTIME_API UMfSoundWave : public USoundWaveProcedural
{
	GENERATED_BODY()

public:
	UMfSoundWave(const FObjectInitializer& ObjectInitializer);

	/** Audio render thread: 16-bit PCM, NumChannels interleaved, at the wave's sample rate. Returns bytes written. */
	virtual int32 GeneratePCMData(uint8* PCMData, const int32 SamplesNeeded) override;

	/** Set once before playing; the state outlives the component as long as this wave is alive. */
	TSharedPtr<FMfRuntimeState, ESPMode::ThreadSafe> State;

private:
	TArray<float> Scratch;
};

/** Talks to `mf serve` (control + stream sockets) and plays one character on its owner. */
UCLASS(ClassGroup = (MfRuntime), meta = (BlueprintSpawnableComponent))
class MFRUNTIME_API UMfCharacterComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UMfCharacterComponent();

	/** The server's control socket; the stream is on the next port unless StreamAddress is set. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	FString ControlAddress = TEXT("tcp://127.0.0.1:5555");

	/** Empty: the control address with port + 1. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	FString StreamAddress;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	FString Character = TEXT("default");

	/** Audio buffered before an utterance starts (absorbs network and generation jitter). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime", meta = (ClampMin = "0", ClampMax = "2000"))
	int32 PrebufferMs = 80;

	/** How long the engine holds audio in its output buffers before it is heard: frames are shown that much later
	 *  so the lips match the voice. Not measured automatically (the procedural sound wave's buffering depends on the
	 *  platform's mixer settings); 0 shows frames when their audio is generated. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime", meta = (ClampMin = "0", ClampMax = "1000"))
	int32 OutputLatencyMs = 0;

	/** Denoising steps per chunk for Say/Drive (1-50); 0 keeps the server's setting. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime", meta = (ClampMin = "0", ClampMax = "50"))
	int32 Steps = 0;

	/** eSpeak NG voice for Say (e.g. en-gb-x-rp+f2); empty keeps the character's voice. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	FString Voice;

	/** Rate of the procedural sound wave (the engine's mixer converts it to the device rate). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	int32 OutputRate = 48000;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	int32 RequestTimeoutMs = 5000;

	/** Optional CURVE key files made by `mf keys` (the server's NAME.key and this client's NAME.key_secret). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Security")
	FString ServerPublicKeyFile;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Security")
	FString ClientSecretKeyFile;

	/** Between lines the character listens: the server streams idle chunks (silence, the mouth closed, blinks and a
	 *  slow head sway in the rig) whenever it has nothing to say. Sent at BeginPlay and again after a server restart;
	 *  change it at run time with SetIdle. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime")
	bool bListenBetweenLines = false;

	/** Video frames on FrameTexture. Off: rig-only mode - the voice and the rig frames only (UMfRigComponent), the server
	 *  skips its video decoder. Sent to the server (set_outputs) before the first Say/Drive and after a server restart;
	 *  applies from the character's next line. Change it at run time with SetOutputs. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	bool bVideo = true;

	/** Rig frames (face controls and OVR viseme weights) with each frame; needs a model with a rig head. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	bool bRig = true;

	/** The rig values of the latest frame that was due (named by MfRigComponent::GetControlNames: rig version 1 has
	 *  28), empty before the first. */
	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime|Rig")
	TArray<float> RigValues;

	/** The character's face (RGBA8), created when the first frame arrives; bind it to a material. */
	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime")
	TObjectPtr<UTexture2D> FrameTexture;

	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime")
	TObjectPtr<UMfSoundWave> SoundWave;

	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime")
	TObjectPtr<UAudioComponent> AudioComponent;

	UPROPERTY(BlueprintAssignable, Category = "MfRuntime")
	FMfUtteranceStarted OnUtteranceStarted;

	UPROPERTY(BlueprintAssignable, Category = "MfRuntime")
	FMfUtteranceEnded OnUtteranceEnded;

	UPROPERTY(BlueprintAssignable, Category = "MfRuntime")
	FMfFrameTextureCreated OnFrameTextureCreated;

	/** A new rig frame is due (at most once per tick: the newest one), with its values. */
	UPROPERTY(BlueprintAssignable, Category = "MfRuntime|Rig")
	FMfRigFrame OnRigFrame;

	/** Speak a line; returns its utterance id, or -1 on error (logged). */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime")
	int64 Say(const FString& Text);

	/** Animate the face from your own mono audio (-1..1) at SampleRate; returns the utterance id, or -1. */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime")
	int64 Drive(const TArray<float>& Pcm, int32 SampleRate);

	/** Stop speaking now (local fade-out at once; the server stops generating). */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime")
	void Interrupt();

	/** Use a texture's pixels as the character's face (uncompressed BGRA8 with CPU-readable mip 0; see README). */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime")
	bool SetCharacterFromTexture(UTexture2D* Texture);

	/** Milliseconds of audio buffered and not played yet. */
	UFUNCTION(BlueprintPure, Category = "MfRuntime")
	float GetBufferedMs() const;

	/** What the character's chunks carry from its next line on: bNewVideo false is rig-only mode. Asks the server now
	 *  (waits for its reply on this thread, like Say); false when it refused (logged), e.g. rig-only with a model
	 *  that has no rig head. */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime|Rig")
	bool SetOutputs(bool bNewVideo, bool bNewRig);

	/** Listening on or off from now on (the server's idle op; bListenBetweenLines keeps the setting): asks the server
	 *  now, waiting for its reply on this thread like Say; false when it failed (logged). */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime")
	bool SetIdle(bool bOn);

	/** Rig frames taken so far: it changes when a new one is in RigValues. */
	int64 GetRigFramesTaken() const { return RigFramesTaken; }

protected:
	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type EndPlayReason) override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction) override;

private:
	void ShowFrame(int32 Width, int32 Height, const uint8* Rgb);
	/** Sends bVideo/bRig once per server run (before the first Say/Drive, and again after a restart); false when that
	 *  failed (logged). */
	bool EnsureOutputs();

	TSharedPtr<FMfRuntimeState, ESPMode::ThreadSafe> State;
	int64 RigFramesTaken = 0;
	int64 IdleSentAtRestarts = -1;  // client_stats().restarts when bListenBetweenLines was last sent (or failed); -1: not yet
	bool EnsureIdle();
	int64 OutputsSentAtRestarts = -1;  // client_stats().restarts when bVideo/bRig were last sent; -1: not yet
};
