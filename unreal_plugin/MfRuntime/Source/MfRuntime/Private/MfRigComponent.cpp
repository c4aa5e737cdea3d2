#include "MfRigComponent.h"

#include <exception>
#include <string>
#include <vector>

#include "Animation/MorphTarget.h"
#include "Components/SceneComponent.h"
#include "Components/SkeletalMeshComponent.h"
#include "Engine/SkeletalMesh.h"
#include "GameFramework/Actor.h"
#include "MfCharacterComponent.h"
#include "MfRuntimeLog.h"

#include "MfrLibBegin.h"
#include "mfruntime/rig.hpp"
#include "MfrLibEnd.h"

/** The name map resolved against the mesh, and the morph target names to set (game thread only). */
struct FMfRigState
{
	mfruntime::RigMapper Mapper;
	TArray<FName> Targets;  // Mapper.targets() as FNames
};

namespace
{
std::string Utf8(const FString& S)
{
	return std::string(TCHAR_TO_UTF8(*S));
}

FString FromUtf8(const std::string& S)
{
	return FString(UTF8_TO_TCHAR(S.c_str()));
}

template <class T>
T* FindOnOwner(const AActor* Owner, FName Name)
{
	if (!Owner)
	{
		return nullptr;
	}
	TArray<T*> Found;
	Owner->GetComponents<T>(Found);
	for (T* C : Found)
	{
		if (Name.IsNone() || C->GetFName() == Name)
		{
			return C;
		}
	}
	return nullptr;
}
}  // namespace

UMfRigComponent::UMfRigComponent()
{
	PrimaryComponentTick.bCanEverTick = true;
	PrimaryComponentTick.bStartWithTickEnabled = true;
}

TArray<FString> UMfRigComponent::GetControlNames()
{
	TArray<FString> Names;
	for (const std::string& Name : mfruntime::rig_controls())
	{
		Names.Add(FromUtf8(Name));
	}
	return Names;
}

void UMfRigComponent::BeginPlay()
{
	Super::BeginPlay();
	FindComponents();
	if (!Character)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("MfRigComponent on %s: no MfCharacterComponent on the actor (add one, or call "
			"SetCharacterComponent)"), *GetNameSafe(GetOwner()));
	}
	else if (bRigOnly)
	{
		Character->bVideo = false;  // sent with set_outputs before the character's first line
	}
	if (!Mesh)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("MfRigComponent on %s: no skeletal mesh component%s%s"), *GetNameSafe(GetOwner()),
			MeshComponentName.IsNone() ? TEXT("") : TEXT(" named "),
			MeshComponentName.IsNone() ? TEXT("") : *MeshComponentName.ToString());
	}
	HeadComponent = nullptr;
	if (HeadPose == EMfHeadPose::SceneComponent)
	{
		HeadComponent = HeadComponentName.IsNone() ? static_cast<USceneComponent*>(Mesh.Get())
												   : FindOnOwner<USceneComponent>(GetOwner(), HeadComponentName);
	}
	if (HeadComponent)
	{
		HeadRestRotation = HeadComponent->GetRelativeRotation();
	}
	else if (HeadPose == EMfHeadPose::SceneComponent)
	{
		UE_LOG(LogMfRuntime, Warning, TEXT("MfRigComponent: no scene component %s on %s for the head pose"),
			*HeadComponentName.ToString(), *GetNameSafe(GetOwner()));
	}
	RebuildNameMap();
}

void UMfRigComponent::EndPlay(const EEndPlayReason::Type EndPlayReason)
{
	if (HeadComponent)
	{
		HeadComponent->SetRelativeRotation(HeadRestRotation);
	}
	Rig.Reset();
	Super::EndPlay(EndPlayReason);
}

void UMfRigComponent::FindComponents()
{
	if (!Character)
	{
		Character = FindOnOwner<UMfCharacterComponent>(GetOwner(), NAME_None);
	}
	if (!Mesh)
	{
		Mesh = FindOnOwner<USkeletalMeshComponent>(GetOwner(), MeshComponentName);
	}
	if (Character)
	{
		AddTickPrerequisiteComponent(Character);  // its tick takes the frame that is due; this one applies it
	}
}

void UMfRigComponent::SetTargetMesh(USkeletalMeshComponent* NewMesh)
{
	Mesh = NewMesh;
	RebuildNameMap();
}

void UMfRigComponent::SetCharacterComponent(UMfCharacterComponent* NewCharacter)
{
	if (Character)
	{
		RemoveTickPrerequisiteComponent(Character);
	}
	Character = NewCharacter;
	SeenRigFrames = Character ? Character->GetRigFramesTaken() : 0;
	if (Character)
	{
		AddTickPrerequisiteComponent(Character);
	}
}

void UMfRigComponent::RebuildNameMap()
{
	// Targets set by an earlier map go back to 0 (a target the new map leaves out would otherwise stay where it was).
	if (Mesh && Rig)
	{
		for (const FName& Target : Rig->Targets)
		{
			Mesh->SetMorphTarget(Target, 0.0f);
		}
	}
	Rig.Reset();
	DrivenTargets.Reset();
	UnmatchedEntries.Reset();
	USkeletalMesh* Asset = Mesh ? Mesh->GetSkeletalMeshAsset() : nullptr;
	ResolvedAsset = Asset;
	if (!Asset)
	{
		return;
	}

	mfruntime::RigMap Map;
	const std::string Prefix = Utf8(PresetTargetPrefix);
	if (Preset == EMfRigPreset::ARKit || Preset == EMfRigPreset::ARKitAndOVRVisemes)
	{
		Map.add_arkit(PresetScale, Prefix);
	}
	if (Preset == EMfRigPreset::OVRVisemes || Preset == EMfRigPreset::ARKitAndOVRVisemes)
	{
		Map.add_ovr_visemes(PresetScale, Prefix);
	}
	for (const FMfRigMapEntry& Entry : CustomEntries)
	{
		Map.add(Utf8(Entry.Control), Utf8(Entry.MorphTarget), Entry.Scale);
	}
	std::vector<std::string> MeshTargets;
	for (const auto& Morph : Asset->GetMorphTargets())
	{
		if (Morph)
		{
			MeshTargets.push_back(Utf8(Morph->GetName()));
		}
	}

	TSharedPtr<FMfRigState> NewRig = MakeShared<FMfRigState>();
	try
	{
		NewRig->Mapper = mfruntime::RigMapper(Map, MeshTargets);
		NewRig->Mapper.set_smoothing(FMath::Max(0.0f, SmoothingSeconds));
		NewRig->Mapper.set_rest_after(FMath::Max(0.0f, RestAfterSeconds));
	}
	catch (const std::exception& E)
	{
		UE_LOG(LogMfRuntime, Error, TEXT("MfRigComponent: %s"), UTF8_TO_TCHAR(E.what()));
		return;
	}
	for (const std::string& Target : NewRig->Mapper.targets())
	{
		NewRig->Targets.Add(FName(*FromUtf8(Target)));
	}
	DrivenTargets = NewRig->Targets;
	for (const mfruntime::RigMapIssue& Issue : NewRig->Mapper.unmatched())
	{
		UnmatchedEntries.Add(FromUtf8(Issue.message));
		UE_LOG(LogMfRuntime, Warning, TEXT("MfRigComponent on %s (mesh %s): %s"), *GetNameSafe(GetOwner()),
			*Asset->GetName(), *UnmatchedEntries.Last());
	}
	UE_LOG(LogMfRuntime, Log, TEXT("MfRigComponent: %d morph targets of %s driven by %d name map entries (%d unmatched)"),
		DrivenTargets.Num(), *Asset->GetName(), static_cast<int32>(NewRig->Mapper.matched()), UnmatchedEntries.Num());
	SeenRigFrames = Character ? Character->GetRigFramesTaken() : 0;
	Rig = NewRig;
}

void UMfRigComponent::TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	if (!Mesh || !Character)
	{
		return;
	}
	if (Mesh->GetSkeletalMeshAsset() != ResolvedAsset.Get())
	{
		RebuildNameMap();  // the component shows another mesh now
	}
	if (!Rig)
	{
		return;
	}
	mfruntime::RigMapper& Mapper = Rig->Mapper;
	const int64 Taken = Character->GetRigFramesTaken();
	if (Taken != SeenRigFrames)
	{
		SeenRigFrames = Taken;
		const TArray<float>& Values = Character->RigValues;
		Mapper.set_frame(Values.GetData(), static_cast<size_t>(Values.Num()));
	}
	Mapper.update(DeltaTime);

	const std::vector<float>& Weights = Mapper.weights();
	for (int32 i = 0; i < Rig->Targets.Num(); ++i)
	{
		Mesh->SetMorphTarget(Rig->Targets[i], Weights[static_cast<size_t>(i)]);
	}
	ApplyHeadPose();
}

void UMfRigComponent::ApplyHeadPose()
{
	const mfruntime::HeadPose Pose = Rig->Mapper.head_pose();
	// The rig's convention (docs/RIG.md) in Unreal's, for a character facing +X (the signs are tested in the C++ client).
	const mfruntime::UnrealRotator Turn = mfruntime::unreal_rotator(Pose);
	HeadRotation = FRotator(Turn.pitch * HeadAxisScale.Y, Turn.yaw * HeadAxisScale.Z, Turn.roll * HeadAxisScale.X);
	HeadOffset = FVector2D(Pose.offset_x, Pose.offset_y);
	if (HeadPose == EMfHeadPose::SceneComponent && HeadComponent)
	{
		// The pose turns the component about its own rest orientation.
		HeadComponent->SetRelativeRotation(HeadRestRotation.Quaternion() * HeadRotation.Quaternion());
	}
}
