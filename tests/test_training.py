"""Training: every stage learns, kill + resume is bitwise exact, DDP ranks agree, bad files and recipes fail clearly."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mfruntime.config import preset
from mfruntime.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_weights
from mfruntime.training.loop import TrainOptions, step_generator, train
from mfruntime.training.recipe import load_recipe
from mfruntime.training.stages import STAGES

STAGE_TABLES = """
[stages.codec-video]
steps = {steps}
batch_size = 4
warmup_steps = 2
log_every = 1
ckpt_every = 3
[stages.codec-audio]
steps = {steps}
batch_size = 4
warmup_steps = 2
log_every = 1
ckpt_every = 3
crop_seconds = 0.32
[stages.audio]
steps = 2
batch_size = 2
log_every = 1
[stages.video]
steps = 2
batch_size = 2
log_every = 1
[stages.joint]
steps = 2
batch_size = 2
log_every = 1
init_from = ["audio", "video"]
[stages.mutual]
steps = 2
batch_size = 2
log_every = 1
rollout_chunks = 2
teacher_steps = 4
shortcut_weight = 0.5
drive_fraction = 0.5
init_from = ["joint"]
[stages.probe]
steps = {steps}
batch_size = 4
warmup_steps = 2
log_every = 1
[stages.syncnet]
steps = {steps}
batch_size = 4
warmup_steps = 2
log_every = 1
[stages.rig]
steps = {steps}
batch_size = 4
warmup_steps = 2
log_every = 1
"""


def _recipe(tmp: Path, corpus: Path, steps: int = 8, preset_name: str = "tiny") -> Path:
    path = tmp / "recipe.toml"
    path.write_text(f'preset = "{preset_name}"\n[data]\ncorpus = "{corpus}"\nwindow_seconds = 0.64\nval_fraction = 0.25\n'
                    f'cache = "{tmp / "cache"}"\n' + STAGE_TABLES.format(steps=steps))
    return path


@pytest.fixture(scope="module")
def trained_runs(tiny_corpus, tmp_path_factory):
    """All stages, a couple of steps each, in order (later stages need earlier outputs)."""
    corpus = tiny_corpus[0]
    tmp = tmp_path_factory.mktemp("runs")
    recipe = load_recipe(_recipe(tmp, corpus, steps=4))
    results = {}
    for stage in STAGES:
        results[stage] = train(TrainOptions(stage=stage, recipe=recipe, runs=tmp / "runs", progress=False))
    return tmp, recipe, results


def test_every_stage_runs_and_writes_its_outputs(trained_runs):
    tmp, recipe, results = trained_runs
    for stage, res in results.items():
        run = tmp / "runs" / "tiny" / stage
        assert (run / "final.safetensors").is_file()
        if stage == "codec-audio":  # the harmonic codec learns nothing: statistics and held-out metrics only
            assert res["steps"] == 0 and not (run / "metrics.jsonl").exists()
            continue
        assert (run / "loss.png").is_file()
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == res["steps"] and torch.isfinite(torch.tensor(rows[-1]["loss"]))
    assert "val_psnr_db" in results["codec-video"] and "val_pesq_wb" in results["codec-audio"]
    assert "val_mouth_corr" in results["probe"] and "val_lse_c" in results["syncnet"]
    assert "val_viseme_top1" in results["rig"] and "val_mae_jawOpen" in results["rig"]
    assert json.loads((tmp / "runs" / "tiny" / "rig" / "final.json").read_text())["model_overrides"] == {"rig": "av"}
    assert results["mutual"]["final_losses"]["distill"] >= 0 and "shortcut" in results["mutual"]["final_losses"]
    joint = load_weights(tmp / "runs" / "tiny" / "joint" / "final.safetensors")
    assert any("x_out" in k for k in joint)  # the joint model has cross-modal attention


@pytest.mark.parametrize("preset_name,stage", [("tiny-stft" if s == "codec-audio" else "tiny", s) for s in STAGES])
def test_a_few_steps_reduce_the_loss(trained_runs, preset_name, stage):
    """Each stage's loss on a fixed batch drops after a few optimiser steps on it (the learned audio codec is
    the tiny-stft preset's; tiny's harmonic codec has nothing to learn)."""
    tmp, recipe, _ = trained_runs
    torch.manual_seed(0)
    st = STAGES[stage](preset(preset_name), recipe.stage(stage), recipe.data, tmp / "runs" / "tiny", progress=False)
    for earlier in recipe.stage(stage).init_from:
        st.load_init(earlier, load_weights(st.stage_output(earlier)))
    st.prepare()
    batch = st.make_batch(list(range(2)), step_generator(0, 0, 0))
    opt = torch.optim.Adam([p for p in st.parameters() if p.requires_grad], lr=2e-3)

    def loss() -> torch.Tensor:
        return st(batch, step_generator(1, 0, 0))["loss"]

    with torch.no_grad():
        before = float(loss())
    for _ in range(6):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    assert after < before, (stage, before, after)


def _mf_train(recipe: Path, runs: Path, stage: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mfruntime.cli", "-q", "train", "--stage", stage, "--config",
                             str(recipe), "--runs", str(runs), *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_is_bitwise_identical(tiny_corpus, tmp_path):
    recipe = _recipe(tmp_path, tiny_corpus[0], steps=10, preset_name="tiny-stft")  # the learned audio codec
    ref = _mf_train(recipe, tmp_path / "ref", "codec-audio")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    victim = _mf_train(recipe, tmp_path / "kill", "codec-audio")
    metrics = tmp_path / "kill" / "tiny-stft" / "codec-audio" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill after the step-3 checkpoint, while step 4+ is running
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    run = tmp_path / "kill" / "tiny-stft" / "codec-audio"
    assert not (run / "final.safetensors").exists() and list_checkpoints(run)

    again = _mf_train(recipe, tmp_path / "kill", "codec-audio")  # without --resume: refused, nothing lost
    assert again.wait(timeout=300) == 2 and "--resume" in again.stderr.read()
    resumed = _mf_train(recipe, tmp_path / "kill", "codec-audio", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    ref_rows = (tmp_path / "ref" / "tiny-stft" / "codec-audio" / "metrics.jsonl").read_text().splitlines()
    new_rows = (run / "metrics.jsonl").read_text().splitlines()
    strip = [lambda line: {k: v for k, v in json.loads(line).items() if k != "seconds"}][0]
    assert [strip(line) for line in new_rows] == [strip(line) for line in ref_rows]
    a = load_weights(tmp_path / "ref" / "tiny-stft" / "codec-audio" / "final.safetensors")
    b = load_weights(run / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_torchrun_keeps_ranks_identical(tiny_corpus, tmp_path):
    recipe = _recipe(tmp_path, tiny_corpus[0], steps=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                          "-m", "mfruntime.cli", "-q", "train", "--stage", "codec-video", "--config", str(recipe),
                          "--runs", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    final = json.loads((tmp_path / "ddp" / "tiny" / "codec-video" / "final.json").read_text())
    assert final["world_size"] == 2
    digests = final["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_corrupt_checkpoint_names_the_file(trained_runs, tmp_path):
    tmp, _, _ = trained_runs
    src = list_checkpoints(tmp / "runs" / "tiny" / "codec-video")[-1]
    bad = tmp_path / src.name
    import shutil
    shutil.copytree(src, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(weights)):
        load_checkpoint(bad)
    (bad / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_weights(junk)


def test_recipe_rejects_unknown_fields(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('preset = "tiny"\n[stages.audio]\nsteps = 3\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match="unknown field 'learning_rate'"):
        load_recipe(p)
    p.write_text('preset = "tiny"\n[data]\ncorpsu = "x"\n')
    with pytest.raises(ValueError, match="unknown field 'corpsu'"):
        load_recipe(p)
    p.write_text('preset = "tiny"\n[stages.dance]\nsteps = 3\n')
    with pytest.raises(ValueError, match="unknown stage 'dance'"):
        load_recipe(p)
    assert load_recipe(Path(__file__).parents[1] / "recipes" / "tiny.toml").stage("mutual").teacher_steps == 16


def test_a_diverging_run_stops_with_a_clear_error(tiny_corpus, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(f'preset = "tiny-stft"\n[data]\ncorpus = "{tiny_corpus[0]}"\nval_fraction = 0.25\n'
                    '[stages.codec-audio]\nsteps = 6\nbatch_size = 2\nwarmup_steps = 1\nlr = 1e12\ncrop_seconds = 0.32\n')
    with pytest.raises(FloatingPointError, match="loss became"):
        train(TrainOptions(stage="codec-audio", recipe=load_recipe(path), runs=tmp_path / "runs", progress=False))
    assert not (tmp_path / "runs" / "tiny-stft" / "codec-audio" / "final.safetensors").exists()


def test_recipe_model_switches(tmp_path):
    """A recipe's [model] table may flip the ablation switches, nothing else, and only with booleans."""
    p = tmp_path / "r.toml"
    p.write_text('preset = "tiny"\n[model]\naligned_phonemes = false\n')
    cfg = load_recipe(p).model_config()
    assert cfg.aligned_phonemes is False and cfg.reference_anchor is True and cfg == dataclasses.replace(preset("tiny"), aligned_phonemes=False)
    p.write_text('preset = "tiny"\n[model]\nwindow_chunks = 3\n')
    with pytest.raises(ValueError, match="'window_chunks' cannot be set by a recipe"):
        load_recipe(p)
    p.write_text('preset = "tiny"\n[model]\nreference_anchor = 0\n')
    with pytest.raises(ValueError, match="must be true or false"):
        load_recipe(p)
    for ablation in (Path(__file__).parents[1] / "recipes" / "ablations").glob("*.toml"):
        load_recipe(ablation).model_config()  # the shipped ablation recipes are valid


def test_mutual_stage_keeps_driven_audio_clean(trained_runs, monkeypatch):
    """Audio-driven examples in the Mutual Forcing rollout: the audio stream is the given speech throughout,
    so what the rollout commits for audio is exactly the real latents, and the losses stay finite."""
    from mfruntime.training.stages import mutual

    tmp, recipe, _ = trained_runs
    st = STAGES["mutual"](preset("tiny"), recipe.stage("mutual"), recipe.data, tmp / "runs" / "tiny", progress=False)
    st.load_init("joint", load_weights(st.stage_output("joint")))
    st.prepare()
    batch = st.make_batch([0, 1], step_generator(0, 0, 0))
    batch["drive"] = torch.tensor([True, False])
    batch["phonemes"].mask[0] = False
    committed = []
    original = mutual.commit  # the engine's commit, as the stage calls it (student's cache; the teacher's too)
    monkeypatch.setattr(mutual, "commit", lambda net, state, x, ph: (
        committed.append(x["audio"].clone()) if net is st.net else None, original(net, state, x, ph))[1])
    out = st(batch, step_generator(1, 0, 0))
    assert torch.isfinite(out["loss"])
    assert committed  # the rollout committed chunks through the engine's commit
    for k, audio in enumerate(committed):
        assert torch.equal(audio[0, 0], batch["audio"][0, k])  # driven: the real latents
        assert not torch.equal(audio[1, 0], batch["audio"][1, k])  # generated


def test_mutual_rollouts_start_from_inference_temperature_noise(trained_runs):
    """The few-step mode is taught from the noise it starts from live: each stream's rollout noise is the
    standard normal draw scaled by that stream's default GenerationOptions temperature."""
    from mfruntime.engine.generator import GenerationOptions

    tmp, recipe, _ = trained_runs
    st = STAGES["mutual"](preset("tiny"), recipe.stage("mutual"), recipe.data, tmp / "runs" / "tiny", progress=False)
    noise = st.rollout_noise(3, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    options = GenerationOptions()
    temps = {"audio": options.audio_temperature, "video": options.video_temperature}
    for s in st.streams:  # drawn in the stage's stream order
        temp = temps[s]
        raw = torch.randn((3, *st.net.latent_shape(s, 1)), generator=g)
        assert torch.allclose(noise[s], temp * raw)


def test_recipe_validates_the_teacher_and_the_step_size_range(tmp_path):
    p = tmp_path / "r.toml"
    for table, message in [('[stages.mutual]\nteacher = "oracle"', r"\[stages.mutual\]: teacher must be one of ema, frozen, self"),
                           ("[stages.mutual]\nteacher_decay = 1.0", "teacher_decay must be between 0 and 1"),
                           ('[stages.mutual]\nfm_history = "mixed"', "fm_history must be one of generated, real, both"),
                           # the trained d range is a stage's business (few_step_d), not a [model] switch
                           ("[model]\nmax_step_size = 1.0", "'max_step_size' cannot be set by a recipe"),
                           ("[stages.mutual]\nfew_step_d = false\nshortcut_weight = 0.5", "shortcut_weight needs few_step_d")]:
        p.write_text(f'preset = "tiny"\n{table}\n')
        with pytest.raises(ValueError, match=message):
            load_recipe(p)
    with pytest.raises(ValueError, match="max_step_size must be between 0.125"):
        dataclasses.replace(preset("tiny"), max_step_size=0.01)
    shipped = sorted((Path(__file__).parents[1] / "recipes" / "mutual").glob("*.toml"))
    assert shipped
    for recipe in shipped:
        load_recipe(recipe).model_config()  # the shipped experiment recipes are valid


def _mutual_stage(trained_runs, **changes):
    tmp, recipe, _ = trained_runs
    r = dataclasses.replace(recipe.stage("mutual"), **changes)
    st = STAGES["mutual"](preset("tiny"), r, recipe.data, tmp / "runs" / "tiny", progress=False)
    st.load_init("joint", load_weights(st.stage_output("joint")))
    return st


def test_the_slow_teacher_follows_the_student_by_its_decay(trained_runs):
    """Teacher "ema": θ̄ ← λ θ̄ + (1 − λ) θ after every optimiser step; "frozen": the starting weights forever;
    "self": no second network (the student is its own teacher)."""
    ema = _mutual_stage(trained_runs, teacher="ema", teacher_decay=0.9)
    start = {k: v.clone() for k, v in ema.teacher.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in ema.net.state_dict().items())  # starts as the student
    assert not any(p.requires_grad for p in ema.teacher.parameters())  # never trained by the optimiser
    with torch.no_grad():
        for p in ema.net.parameters():
            p.add_(1.0)
    ema.after_step(1)
    student = ema.net.state_dict()
    for k, v in ema.teacher.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.9 * start[k] + 0.1 * student[k], atol=1e-6), k
    frozen = _mutual_stage(trained_runs, teacher="frozen")
    before = {k: v.clone() for k, v in frozen.teacher.state_dict().items()}
    with torch.no_grad():
        for p in frozen.net.parameters():
            p.add_(1.0)
    frozen.after_step(1)
    assert all(torch.equal(before[k], v) for k, v in frozen.teacher.state_dict().items())
    assert _mutual_stage(trained_runs, teacher="self").teacher is None
    # The teacher is part of the stage's state: checkpoints hold it, so --resume continues from the same teacher.
    assert any(k.startswith("teacher.") for k in ema.state_dict()) and not any(
        k.startswith("teacher.") for k in ema.export())


@pytest.mark.parametrize("teacher", ["ema", "frozen"])
def test_mutual_run_killed_and_resumed_is_bitwise_identical(trained_runs, tmp_path, monkeypatch, teacher):
    """A mutual run with a slow teacher dies after its step-2 checkpoint; --resume ends bitwise where an
    uninterrupted run ends (weights, teacher, EMA and logged losses)."""
    import shutil

    from mfruntime.training.recipe import Recipe
    from mfruntime.training.stages.mutual import MutualStage

    tmp, recipe, _ = trained_runs
    r = dataclasses.replace(recipe.stage("mutual"), steps=4, ckpt_every=2, teacher=teacher, teacher_decay=0.5,
                            fm_history="both", few_step_d=teacher == "ema",
                            shortcut_weight=0.5 if teacher == "ema" else 0.0)
    rec = Recipe(preset="tiny", data=recipe.data, stages={**recipe.stages, "mutual": r}, path="test")
    runs = {}
    for name in ("ref", "kill"):
        runs[name] = tmp_path / name
        for stage in ("codec-video", "codec-audio", "joint"):
            shutil.copytree(tmp / "runs" / "tiny" / stage, runs[name] / "tiny" / stage)
    train(TrainOptions(stage="mutual", recipe=rec, runs=runs["ref"], progress=False))

    original = MutualStage.after_step

    def dies_at_step_3(self, step):
        original(self, step)
        if step == 3:
            raise KeyboardInterrupt("killed")
    monkeypatch.setattr(MutualStage, "after_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(TrainOptions(stage="mutual", recipe=rec, runs=runs["kill"], progress=False))
    monkeypatch.setattr(MutualStage, "after_step", original)
    run = runs["kill"] / "tiny" / "mutual"
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002"]
    ck = load_checkpoint(list_checkpoints(run)[-1])
    assert any(k.startswith("teacher.") for k in ck["model"])
    train(TrainOptions(stage="mutual", recipe=rec, runs=runs["kill"], resume=True, progress=False))

    def rows(root):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (root / "tiny" / "mutual" / "metrics.jsonl").read_text().splitlines()]
    assert rows(runs["kill"]) == rows(runs["ref"])
    # The stage that trained the few-step sizes says so, and its export sees them; the other clips d to 1/8.
    overrides = json.loads((run / "final.json").read_text())["model_overrides"]
    assert overrides == ({"max_step_size": 1.0} if teacher == "ema" else {})
    a = load_checkpoint(list_checkpoints(runs["ref"] / "tiny" / "mutual")[-1])
    b = load_checkpoint(list_checkpoints(run)[-1])
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_the_sync_critic_is_carried_from_the_joint_stage_or_trained_first(trained_runs, tmp_path):
    """The joint stage leaves its critic beside its weights and the mutual stage starts with it; without it
    (a joint model unpacked from a bundle) the critic is trained on real pairs before the stage begins."""
    import shutil

    from mfruntime.training.stages.diffusion import CRITIC_FILE

    tmp, recipe, _ = trained_runs
    joint = tmp / "runs" / "tiny" / "joint"
    assert (joint / CRITIC_FILE).is_file()
    carried = _mutual_stage(trained_runs)
    assert carried.critic_from_joint
    saved = load_weights(joint / CRITIC_FILE)
    assert all(torch.equal(saved[k], v) for k, v in carried.sync.state_dict().items())

    root = tmp_path / "runs" / "tiny"
    for stage in ("codec-video", "codec-audio", "joint"):
        shutil.copytree(tmp / "runs" / "tiny" / stage, root / stage)
    (root / "joint" / CRITIC_FILE).unlink()
    st = STAGES["mutual"](preset("tiny"), dataclasses.replace(recipe.stage("mutual"), critic_steps=40), recipe.data,
                          root, progress=False)
    st.load_init("joint", load_weights(st.stage_output("joint")))
    assert not st.critic_from_joint
    untrained = {k: v.clone() for k, v in st.sync.state_dict().items()}
    st.prepare()  # trains the critic first
    trained = {k: v.clone() for k, v in st.sync.state_dict().items()}
    assert not all(torch.equal(untrained[k], v) for k, v in trained.items())
    batch = st.make_batch([0, 1, 2, 3], step_generator(0, 0, 0))

    def critic_loss(weights):
        from mfruntime.training.losses import info_nce
        st.sync.load_state_dict(weights)
        with torch.no_grad():
            return float(info_nce(*st.sync(batch["video"], batch["audio"]), st.recipe.sync_temperature))
    assert critic_loss(trained) < critic_loss(untrained)


def test_few_step_sizes_outside_the_trained_range_are_shown_the_largest_trained_one():
    """The joint stage draws d only from MULTI_STEP_D, so its network is never shown a larger d: a 1-step jump
    is conditioned like a 1/8 step. A model trained on the few-step sizes (max_step_size 1) sees them."""
    from mfruntime.config import MULTI_STEP_D
    from mfruntime.model.transformer import TwinStreamTransformer

    torch.manual_seed(0)
    net = TwinStreamTransformer(preset("tiny"))
    for p in net.streams["video"].d_embed.parameters():
        torch.nn.init.normal_(p)
    c = lambda m, d: m.conditioning("video", 0.5, d, 1, 1, "cpu")  # noqa: E731
    assert torch.equal(c(net, 1.0), c(net, max(MULTI_STEP_D))) and torch.equal(c(net, 0.25), c(net, 0.125))
    assert not torch.equal(c(net, 1 / 16), c(net, 1 / 8))
    wide = TwinStreamTransformer(dataclasses.replace(preset("tiny"), max_step_size=1.0))
    wide.load_state_dict(net.state_dict())
    assert not torch.equal(c(wide, 1.0), c(wide, 0.125)) and torch.equal(c(wide, 0.125), c(net, 0.125))


def test_without_step_conditioning_the_network_has_no_d_input(tmp_path):
    """The paper's plain multi-step baseline (step_conditioning = false): no step-size embedding, the output
    does not depend on d, a recipe may switch it off, and the mutual stage (which trains d) refuses it."""
    from mfruntime.model.transformer import TwinStreamTransformer
    from mfruntime.training.recipe import load_recipe
    from mfruntime.training.stages.mutual import MutualStage

    cfg = dataclasses.replace(preset("tiny"), step_conditioning=False)
    net = TwinStreamTransformer(cfg)
    assert net.streams["video"].d_embed is None and not any("d_embed" in k for k in net.state_dict())
    c = lambda d: net.conditioning("video", 0.5, d, 1, 1, "cpu")  # noqa: E731
    assert torch.equal(c(0.0), c(1.0)) and torch.equal(c(0.125), c(0.25))
    p = tmp_path / "r.toml"
    p.write_text('preset = "tiny"\n[model]\nstep_conditioning = false\n[stages.mutual]\nsteps = 1\n')
    r = load_recipe(p)
    assert r.model_config().step_conditioning is False
    with pytest.raises(ValueError, match="step_conditioning = false"):
        MutualStage(r.model_config(), r.stage("mutual"))


@pytest.mark.parametrize("rig", ["", "av"])
def test_unpack_then_export_gives_back_the_bundle(tmp_path, rig):
    """mf export --unpack writes a bundle's parts as stage outputs (to train later stages from a shipped
    model); exporting them again gives the same bundle (its rig head included), and an existing run is never
    overwritten."""
    from mfruntime.cli import main
    from mfruntime.model.av import AVModel
    from mfruntime.model.bundle import load_model, save_bundle
    from mfruntime.training.export import export_bundle

    torch.manual_seed(0)
    src = save_bundle(AVModel(dataclasses.replace(preset("tiny"), rig=rig)), tmp_path / "src.safetensors", {"preset": "tiny"})
    assert main(["export", "--unpack", str(src), "--runs", str(tmp_path / "runs")]) == 0
    again = export_bundle(tmp_path / "runs", "tiny", tmp_path / "again.safetensors", transformer_stage="joint")
    a, b = load_model(src).state_dict(), load_model(again).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_model(again).cfg.rig == rig and (any(k.startswith("rig.") for k in a) == bool(rig))
    if rig:  # and a bundle without it on request
        assert load_model(export_bundle(tmp_path / "runs", "tiny", tmp_path / "norig.safetensors",
                                        transformer_stage="joint", rig=False)).rig is None
    assert main(["export", "--unpack", str(src), "--runs", str(tmp_path / "runs")]) == 2  # refuses to overwrite


def test_export_carries_the_trained_step_size_range(trained_runs, tmp_path):
    """A transformer stage trained with a [model] override (max_step_size) exports a bundle whose config has it."""
    import shutil

    from mfruntime.model.bundle import load_model
    from mfruntime.training.export import export_bundle

    tmp, _, _ = trained_runs
    root = tmp_path / "runs" / "tiny"
    for stage in ("codec-video", "codec-audio", "mutual"):
        shutil.copytree(tmp / "runs" / "tiny" / stage, root / stage)
    final = root / "mutual" / "final.json"
    doc = json.loads(final.read_text())
    assert doc["model_overrides"] == {"max_step_size": 1.0}  # the mutual stage trained the few-step sizes
    assert load_model(export_bundle(tmp_path / "runs", "tiny", tmp_path / "a.safetensors")).cfg.max_step_size == 1.0
    final.write_text(json.dumps({**doc, "model_overrides": {}}))
    assert load_model(export_bundle(tmp_path / "runs", "tiny", tmp_path / "b.safetensors")).cfg.max_step_size == 0.125
