"""The shared training loop: data order, optimiser, EMA, progress, metrics, plots, checkpoints, DDP.

Run layout (``runs/<preset>/<stage>/``): ``metrics.jsonl`` (one JSON line per logged step),
``loss.png``, ``step-<7-digit step>/`` (e.g. ``step-0000200/``) checkpoints (last K), and at the end ``final.safetensors`` (the
stage's exported weights, EMA when enabled) with ``final.json`` (metrics, wall time).

Under ``torchrun --nproc_per_node N`` the same command uses DistributedDataParallel (gloo on CPU,
NCCL on GPU), shards the batch order by rank and writes logs and checkpoints from rank 0 only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from tqdm import tqdm

from mfruntime.config import preset
from mfruntime.training.checkpoint import list_checkpoints, load_checkpoint, load_weights, save_checkpoint
from mfruntime.training.data import BatchOrder
from mfruntime.training.recipe import STAGE_CONFIG_FIELDS, Recipe, StageRecipe
from mfruntime.training.stages import STAGES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    stage: str  # which stage to train
    recipe: Recipe  # the loaded recipe
    runs: Path = Path("runs")  # root of run folders: runs/<preset>/<stage>
    resume: bool = False  # continue from the newest checkpoint
    fresh: bool = False  # delete an existing run of this stage first
    progress: bool = True  # progress bar


def lr_at(step: int, r: StageRecipe) -> float:
    """Linear warm-up to r.lr, then cosine decay to r.lr · r.lr_min_ratio at the last step."""
    if step < r.warmup_steps:
        return r.lr * (step + 1) / r.warmup_steps
    span = max(r.steps - r.warmup_steps, 1)
    progress = min((step - r.warmup_steps) / span, 1.0)
    return r.lr * (r.lr_min_ratio + (1 - r.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """All randomness of one step comes from here, so a resumed run repeats an uninterrupted one."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4099 + rank)


def _dist_setup() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def plot_metrics(metrics_file: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    if not rows:
        return
    keys = [k for k in rows[-1] if k not in ("step", "lr", "seconds")]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        ax.plot([r["step"] for r in rows if k in r], [r[k] for r in rows if k in r], label=k)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(metrics_file.parent.name)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over all parameters and buffers (bitwise identity check across ranks or runs)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines logged after the checkpoint we resume from (they will be logged again)."""
    if path.is_file():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in keep))


def stage_config_overrides(cfg, recipe: Recipe) -> dict:
    """Where a stage's model config differs from its preset (what mf export must apply to the bundle)."""
    base = preset(recipe.preset)
    return {f: getattr(cfg, f) for f in STAGE_CONFIG_FIELDS if getattr(cfg, f) != getattr(base, f)}


def train(opts: TrainOptions) -> dict:
    """Run one stage to its step count (or continue it); return the final metrics."""
    rank, world = _dist_setup()
    recipe, name = opts.recipe, opts.stage
    r = recipe.stage(name)
    cfg = recipe.model_config()
    run_root = Path(opts.runs) / recipe.preset
    run_dir = run_root / name
    if rank == 0:
        if opts.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        if run_dir.exists() and list_checkpoints(run_dir) and not opts.resume:
            raise ValueError(f"{run_dir} already holds checkpoints: pass --resume to continue or --fresh to start over")
        run_dir.mkdir(parents=True, exist_ok=True)
    if world > 1:
        dist.barrier()

    torch.manual_seed(r.seed)  # same initial weights on every rank
    stage = STAGES[name](cfg, r, recipe.data, run_root, opts.progress and rank == 0)
    for earlier in r.init_from:
        stage.load_init(earlier, load_weights(stage.stage_output(earlier)))
    n_items = stage.prepare()
    order = BatchOrder(n_items, r.batch_size, r.seed, rank, world)
    params = [p for p in stage.parameters() if p.requires_grad]
    if not params and r.steps:
        log.info("stage %s has nothing to train (no parameters): it only computes its statistics and metrics", name)
        r = replace(r, steps=0)
    opt = torch.optim.AdamW(params, lr=r.lr, betas=r.betas, weight_decay=r.weight_decay) if params else None
    # The EMA of what the optimiser trains (a stage's untrained parts, e.g. the mutual stage's teacher, are kept
    # once, in the model's own state).
    ema = ({k: v.detach().clone() for k, v in stage.state_dict().items() if not stage.untracked(k)}
           if r.ema_decay > 0 else None)

    step = 0
    metrics_file = run_dir / "metrics.jsonl"
    checkpoints = list_checkpoints(run_dir)
    if opts.resume and checkpoints:
        ck = load_checkpoint(checkpoints[-1])
        stage.load_state_dict(ck["model"])
        if opt is not None:
            opt.load_state_dict(ck["optimizer"])
        if ema is not None and ck["ema"] is not None:
            ema = {k: v for k, v in ck["ema"].items() if k in ema}
        step = ck["step"]
        order.load(ck["state"]["data"])
        if rank == 0:
            _truncate_metrics(metrics_file, step)
        log.info("resumed %s from %s (step %d)", name, checkpoints[-1], step)
    elif opts.resume:
        log.info("no checkpoint in %s: starting %s from scratch", run_dir, name)

    model = stage
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(stage, find_unused_parameters=True)
    started = time.perf_counter()
    bar = tqdm(total=r.steps, initial=step, desc=f"train {name}", unit="step", disable=not (opts.progress and rank == 0))
    stage.train()
    while step < r.steps:
        lr = lr_at(step, r)
        for group in opt.param_groups:
            group["lr"] = lr
        g = step_generator(r.seed, step, rank)
        batch = stage.make_batch(order.next(), g)
        losses = model(batch, g)
        if not torch.isfinite(losses["loss"].detach()):
            raise FloatingPointError(
                f"stage {name}: loss became {losses['loss'].item()} at step {step + 1}; nothing after the last "
                f"checkpoint was saved. Lower lr in {recipe.path} or resume from an earlier checkpoint")
        losses["loss"].backward()
        if r.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, r.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        stage.after_step(step)
        if ema is not None:
            decay = min(r.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in stage.state_dict().items():
                    if k not in ema:
                        continue
                    if v.is_floating_point():
                        ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                    else:
                        ema[k].copy_(v)
        bar.update()
        if rank == 0 and (step % r.log_every == 0 or step == r.steps):
            row = {"step": step, "lr": lr, **{k: float(v.detach()) for k, v in losses.items()},
                   "seconds": round(time.perf_counter() - started, 2)}
            with open(metrics_file, "a") as f:
                f.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        if step % r.ckpt_every == 0 or step == r.steps:
            if rank == 0:
                save_checkpoint(run_dir, step, stage.state_dict(), ema, opt.state_dict(),
                                {"data": order.state(), "stage": name, "recipe": recipe.path,
                                 "seed": r.seed, "world_size": world}, r.keep_last)
                plot_metrics(metrics_file, run_dir / "loss.png")
            if world > 1:
                dist.barrier()
    bar.close()

    # Every rank must end with the same weights; check it rather than assume it.
    digest = weights_digest(stage)
    digests = [digest]
    if world > 1:
        digests = [None] * world
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            log.error("ranks disagree on the final weights: %s", digests)

    result: dict = {}
    if rank == 0:
        if ema is not None:
            stage.load_state_dict({**stage.state_dict(), **ema})
        stage.eval()
        with torch.no_grad() if name.startswith("codec") else nullcontext():
            stage.finalize()
        # Weights first, so a failing validation never loses the run.
        save_file({k: v.contiguous() for k, v in stage.export().items()}, str(run_dir / "final.safetensors"))
        result = {"stage": name, "steps": step, "wall_seconds_this_run": round(time.perf_counter() - started, 1),
                  "world_size": world, "rank_weight_digests": digests,
                  **{k: round(v, 4) for k, v in stage.validate().items()}}
        rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()] if metrics_file.is_file() else []
        if rows:
            result["final_losses"] = {k: v for k, v in rows[-1].items() if k not in ("step", "lr", "seconds")}
        (run_dir / "final.json").write_text(json.dumps({**result, "recipe": asdict(r), "model_overrides": stage_config_overrides(stage.cfg, recipe)},
                                                       indent=1))
        log.info("stage %s done: %s", name, result)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result
