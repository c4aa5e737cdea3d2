// A character's rig stream on a skeletal mesh: each tick the rig frame that is due (taken by UMfCharacterComponent on
// the audio clock, with the video frame of the same index) is mapped by name onto the mesh's morph targets
// (SetMorphTarget, weights 0-1) and smoothed; the head pose optionally turns a scene component, or an Anim Blueprint
// reads it for a bone. The mapping itself is mfruntime::RigMapper (cpp_client/, tested there); this is the glue.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"

#include "MfRigComponent.generated.h"

class UMfCharacterComponent;
class USceneComponent;
class USkeletalMesh;
class USkeletalMeshComponent;
struct FMfRigState;  // the resolved mapping (Private/MfRigComponent.cpp)

/** Entries added before the custom ones: rig control names onto morph targets of the same names. */
UENUM(BlueprintType)
enum class EMfRigPreset : uint8
{
	None UMETA(DisplayName = "None (custom entries only)"),
	ARKit UMETA(DisplayName = "ARKit face controls"),
	OVRVisemes UMETA(DisplayName = "OVR visemes"),
	ARKitAndOVRVisemes UMETA(DisplayName = "ARKit face controls and OVR visemes"),
};

/** Where the head pose (headYaw / headPitch / headRoll) goes. */
UENUM(BlueprintType)
enum class EMfHeadPose : uint8
{
	None UMETA(DisplayName = "Not applied"),
	SceneComponent UMETA(DisplayName = "Rotate a scene component"),
	AnimBlueprint UMETA(DisplayName = "Anim Blueprint reads HeadRotation (for a bone)"),
};

/** One line of the name map: rig control Control drives morph target MorphTarget with value x Scale. */
USTRUCT(BlueprintType)
struct MFRUNTIME_API FMfRigMapEntry
{
	GENERATED_BODY()

	/** A rig control, spelled exactly: jawOpen, mouthClose, mouthFunnel, mouthPucker, mouthStretchLeft,
	 *  mouthStretchRight, eyeBlinkLeft, eyeBlinkRight, headYaw, headPitch, headRoll, headOffsetX, headOffsetY,
	 *  viseme_sil, viseme_PP, viseme_FF, viseme_TH, viseme_DD, viseme_kk, viseme_CH, viseme_SS, viseme_nn, viseme_RR,
	 *  viseme_aa, viseme_E, viseme_ih, viseme_oh, viseme_ou (docs/RIG.md). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	FString Control;

	/** A morph target of the mesh (matched ignoring case). Several entries may drive one target: they add up, then
	 *  the sum is clamped to 0-1. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	FString MorphTarget;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	float Scale = 1.0f;
};

/** Drives a skeletal mesh's morph targets (and optionally a head rotation) from an UMfCharacterComponent's rig frames. */
UCLASS(ClassGroup = (MfRuntime), meta = (BlueprintSpawnableComponent))
class MFRUNTIME_API UMfRigComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UMfRigComponent();

	/** The skeletal mesh component on this actor whose morph targets are set; None: the actor's first one. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	FName MeshComponentName;

	/** Ask the character for rig-only mode at BeginPlay (sets its bVideo off: set_outputs video=false before its first
	 *  line): voice and rig frames, no pixels; the server skips its video decoder. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig")
	bool bRigOnly = false;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Name Map")
	EMfRigPreset Preset = EMfRigPreset::ARKitAndOVRVisemes;

	/** Put before each preset target name, for meshes that name them e.g. ARKit_jawOpen. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Name Map")
	FString PresetTargetPrefix;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Name Map")
	float PresetScale = 1.0f;

	/** Entries after the preset's (e.g. a viseme onto a jaw target at half strength). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Name Map")
	TArray<FMfRigMapEntry> CustomEntries;

	/** Exponential smoothing time constant per target (a step reaches 63 % after it); 0: none. Frames come at 25 fps,
	 *  so a few tens of ms hides the steps between them. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig", meta = (ClampMin = "0", ClampMax = "1"))
	float SmoothingSeconds = 0.03f;

	/** With no new rig frame for this long (the line ended or was cut, or playback stalls) the face relaxes to rest
	 *  (every target 0); 0: it holds the last frame. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig", meta = (ClampMin = "0", ClampMax = "10"))
	float RestAfterSeconds = 0.2f;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Head")
	EMfHeadPose HeadPose = EMfHeadPose::None;

	/** SceneComponent mode: the scene component on this actor to turn (None: the mesh component); its relative rotation
	 *  at BeginPlay is the rest pose the head pose is added to. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Head")
	FName HeadComponentName;

	/** Per axis multiplier of HeadRotation (X roll, Y pitch, Z yaw): 0 leaves an axis out, -1 flips it for a rig whose
	 *  axes differ. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "MfRuntime|Rig|Head")
	FVector HeadAxisScale = FVector(1.0, 1.0, 1.0);

	/** The smoothed head pose in degrees, in Unreal's convention for a character facing +X: yaw + turns to its right,
	 *  pitch + looks up, roll + tilts its head to its right. Read it in an Anim Blueprint (Transform (Modify) Bone on
	 *  the head or neck bone, rotation added to the existing one) for a bone. */
	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime|Rig|Head")
	FRotator HeadRotation = FRotator::ZeroRotator;

	/** The smoothed head offset in face widths (X + image right, Y + down), for effects of your own. */
	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime|Rig|Head")
	FVector2D HeadOffset = FVector2D::ZeroVector;

	/** The morph targets being driven, as the mesh names them. */
	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime|Rig")
	TArray<FName> DrivenTargets;

	/** One line per name map entry that could not be used (unknown control, no such morph target); also logged. */
	UPROPERTY(BlueprintReadOnly, Transient, Category = "MfRuntime|Rig")
	TArray<FString> UnmatchedEntries;

	/** Resolves the name map against the mesh again (after changing the entries, the preset or the mesh). */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime|Rig")
	void RebuildNameMap();

	UFUNCTION(BlueprintCallable, Category = "MfRuntime|Rig")
	void SetTargetMesh(USkeletalMeshComponent* NewMesh);

	/** The character whose rig frames are used; by default the actor's first UMfCharacterComponent. */
	UFUNCTION(BlueprintCallable, Category = "MfRuntime|Rig")
	void SetCharacterComponent(UMfCharacterComponent* NewCharacter);

	/** The rig controls this plugin knows, in the order of the rig values (rig version 1). */
	UFUNCTION(BlueprintPure, Category = "MfRuntime|Rig")
	static TArray<FString> GetControlNames();

protected:
	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type EndPlayReason) override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction) override;

private:
	void FindComponents();
	void ApplyHeadPose();

	UPROPERTY(Transient)
	TObjectPtr<UMfCharacterComponent> Character;

	UPROPERTY(Transient)
	TObjectPtr<USkeletalMeshComponent> Mesh;

	UPROPERTY(Transient)
	TObjectPtr<USceneComponent> HeadComponent;

	/** The mesh asset the map was resolved against (rebuilt when the component shows another one). */
	TWeakObjectPtr<USkeletalMesh> ResolvedAsset;
	FRotator HeadRestRotation = FRotator::ZeroRotator;
	int64 SeenRigFrames = 0;
	TSharedPtr<FMfRigState> Rig;
};
