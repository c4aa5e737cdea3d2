"""The ``mf`` command line.

``mf data synth``  make the synthetic talking-character corpus
``mf data scan``   check a folder of clips and show how the loader sees it
``mf train``       train one stage of the model from a recipe
``mf export``      assemble trained stages into one model bundle
``mf eval``        evaluate a model (sync, quality, drift, speed)
``mf compare``     several evaluations side by side, paired differences against their spread
``mf demo``        say a sentence with the bundled model, write demo.mp4
``mf serve``       stream characters over ZeroMQ (docs/PROTOCOL.md)

Bad arguments end with one line on stderr (exit code 2), not a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from mfruntime import __version__
from mfruntime.config import (DEFAULT_BACKEND, DEFAULT_BIND, DEFAULT_DEVICE, DEFAULT_MAX_CHARACTERS, DEFAULT_MODEL,
                              DEFAULT_PORTRAIT_SIZE, DEFAULT_RENDERER, DEFAULT_SEND_HWM, DEFAULT_STEPS, DEFAULT_THREADS,
                              MODEL_IMAGE_MAX_SIDE, PORTRAIT_SIZES, RENDERERS)
from mfruntime.engine import BACKENDS
from mfruntime.errors import UserFacingError

log = logging.getLogger("mfruntime")


class UsageError(Exception):
    """A user mistake on the command line; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from mfruntime.data.synth import SynthConfig, synthesize_corpus

    cfg = SynthConfig(out=args.out, clips=args.clips, seconds=args.seconds, size=args.size,
                      seed=args.seed, workers=args.workers)
    manifest = synthesize_corpus(cfg, progress=not args.quiet)
    print(
        f"corpus: {len(manifest['clips'])} clips x {cfg.n_frames / cfg.fps:g} s at {cfg.size} px "
        f"({manifest['bytes'] / 1e6:.1f} MB) in {manifest['wall_seconds']:.1f} s "
        f"with {manifest['workers']} workers -> {Path(cfg.out).resolve()}"
    )
    return 0


def _cmd_data_scan(args: argparse.Namespace) -> int:
    from mfruntime.data.dataset import ClipWindows, LoaderConfig, scan_clips

    cfg = LoaderConfig(size=args.size, window_seconds=args.window, val_fraction=args.val_fraction)
    scan = scan_clips(args.dir, cfg, progress=not args.quiet)
    train = ClipWindows(args.dir, "train", cfg, scan=scan)
    val = ClipWindows(args.dir, "val", cfg, scan=scan)
    with_truth = sum(c.truth is not None for c in scan.clips)
    print(f"{args.dir}: {len(scan.clips)} usable clips ({with_truth} with ground truth), {len(scan.skipped)} skipped")
    for path, reason in scan.skipped:
        print(f"  skipped: {reason}")
    print(f"train: {len(train.clips)} clips, {len(train)} windows of {cfg.window_seconds:g} s; "
          f"validation: {len(val.clips)} clips, {len(val)} windows")
    return 0


def _add_log_flags(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars; only warnings and errors")


def _cmd_train(args: argparse.Namespace) -> int:
    from mfruntime.training.loop import TrainOptions, train
    from mfruntime.training.recipe import load_recipe

    recipe = load_recipe(args.config)
    result = train(TrainOptions(stage=args.stage, recipe=recipe, runs=Path(args.runs), resume=args.resume,
                                fresh=args.fresh, progress=not args.quiet))
    if result:
        print(json.dumps(result, indent=1))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from mfruntime.training.export import export_bundle

    if args.out:
        path = export_bundle(Path(args.runs), args.preset or "tiny", args.out, transformer_stage=args.transformer,
                             rig={"auto": None, "yes": True, "no": False}[args.rig])
        print(f"model bundle: {path.resolve()} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.eval_out:
        from mfruntime.training.export import export_instruments

        path = export_instruments(Path(args.runs), args.preset or "tiny", args.eval_out)
        print(f"evaluation weights: {path.resolve()} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.unpack:
        from mfruntime.training.export import unpack_bundle

        for stage, path in unpack_bundle(args.unpack, Path(args.runs), args.preset).items():
            print(f"{stage}: {path.resolve()}")
    if not args.out and not args.eval_out and not args.unpack:
        raise UsageError("nothing to export: pass --out FILE (model bundle) and/or --eval-out FILE (face probe + SyncNet)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from mfruntime.eval.report import format_table
    from mfruntime.eval.run import EvalConfig, evaluate

    cfg = EvalConfig(model=args.model, baseline=args.baseline, clips=args.clips, seconds=args.seconds,
                     steps=tuple(args.steps), drift_seconds=120.0 if args.long else args.drift_seconds,
                     drift_steps=args.drift_steps, out=args.out, cache=args.cache, instruments=args.instruments, seeds=tuple(args.seeds),
                     max_step_size=args.max_step_size,
                     inception=args.inception_weights)
    result = evaluate(cfg, progress=not args.quiet)
    print(format_table(result))
    print(f"\nwrote {Path(cfg.out) / 'eval.json'} and {', '.join(result['plots'])} in {result['wall_seconds']:.0f} s")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mfruntime.eval.compare import format_comparison, load_result

    results = [load_result(spec) for spec in args.results]
    print(format_comparison(results, args.reference or results[0].label, args.steps))
    return 0


def _cmd_score_sync(args: argparse.Namespace) -> int:
    import numpy as np

    from mfruntime.eval.syncnet import score_folder
    from mfruntime.eval.weights import load_syncnet

    net = load_syncnet(args.instruments)
    rows = score_folder(net, args.dir, progress=not args.quiet)
    print(f"{'clip':<40}{'LSE-D':>8}{'LSE-C':>8}{'offset':>9}")
    scored = []
    for name, s in rows:
        if isinstance(s, Exception):
            print(f"{name:<40}  skipped: {s}")
            continue
        scored.append(s)
        print(f"{name:<40}{s.lse_d:>8.3f}{s.lse_c:>8.3f}{s.offset_ms:>+7.0f}ms")
    if scored:
        print(f"{'mean over ' + str(len(scored)) + ' clips':<40}{np.mean([s.lse_d for s in scored]):>8.3f}"
              f"{np.mean([s.lse_c for s in scored]):>8.3f}{np.mean([s.offset_ms for s in scored]):>+7.0f}ms")
    return 0


DEMO_TEXT = "Hello! I am a talking character, and my voice and face are made together, one chunk at a time."


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from mfruntime.data.media import write_clip
    from mfruntime.runtime.session import Session

    start = time.perf_counter()
    out_dir = Path(args.out).resolve().parent
    if not out_dir.is_dir():
        raise UsageError(f"--out {args.out}: the folder {out_dir} does not exist (make it first)")
    if (args.renderer != DEFAULT_RENDERER or args.size is not None) and not args.image:
        raise UsageError("--renderer and --size choose how the --image you give is drawn: pass --image FILE too")
    session = Session(model=args.model, device=args.device, steps=args.steps, backend=args.backend,
                      voice=args.voice, threads=args.threads)
    if args.image:
        chosen = session.set_character(args.image, renderer=args.renderer, size=args.size)
        h, w = session.frame_size
        print(f"{args.image}: drawn by " + ("the portrait renderer" if chosen == "portrait" else "the model") +
              f" at {w}×{h} px" + (" (pass --renderer model or portrait to choose)" if args.renderer == "auto" else ""))
    load = time.perf_counter() - start
    frames, pcm = [], []
    for chunk in session.say(args.text):
        frames.append(chunk.frames)
        pcm.append(chunk.pcm)
    video, audio = np.concatenate(frames), np.concatenate(pcm)
    write_clip(args.out, video, audio, session.fps, session.sample_rate)
    st = session.stats()
    print(f"model {args.model} on {st.device} ({st.backend} backend, {st.steps} steps), loaded in {load:.1f} s")
    print(f"said {len(args.text)} characters: {len(video) / session.fps:.2f} s of {video.shape[2]}×{video.shape[1]}-px video + "
          f"{session.sample_rate} Hz audio in {st.chunks} chunks")
    print(f"time to first chunk {st.ttfc_ms:.0f} ms, real-time factor {st.rtf:.2f} "
          f"(compute s per s of output; chunk p50 {st.chunk_ms_p50:.0f} ms, p95 {st.chunk_ms_p95:.0f} ms)")
    print(f"wrote {Path(args.out).resolve()} (H.264 + AAC)")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from mfruntime.runtime.security import write_keypair

    public, secret = write_keypair(args.out, args.name)
    print(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it, mode 600)")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from mfruntime.runtime.server import ServeConfig, Server

    cfg = ServeConfig(bind=args.bind, stream=args.stream, model=args.model, device=args.device, backend=args.backend,
                      steps=args.steps, min_steps=args.min_steps, admission=not args.no_admission, batch=not args.no_batch, characters=tuple(args.character or ["default"]),
                      max_characters=args.max_characters,
                      send_hwm=args.send_hwm, allow_remote=args.allow_remote, threads=args.threads,
                      curve_secret=args.curve_secret, curve_clients=args.curve_clients)
    web_cfg = None
    if args.web is not None:
        from mfruntime.runtime.web.config import WebConfig

        web_cfg = WebConfig(args.web, args.web_token)  # address and token checked before the model loads
    if args.ray:
        from mfruntime.runtime.cluster.gateway import Gateway

        server = Gateway(cfg, args.ray)  # characters on the cluster's nodes; this process routes (docs/RUNTIME.md)
    else:
        server = Server(cfg)

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        server.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background, where SIGINT is ignored
        signal.signal(sig, on_signal)

    web = []

    def ready(srv) -> None:
        print(f"mf serve: control {srv.control_address} (ROUTER), stream {srv.stream_address} (PUB), "
              f"characters {', '.join(srv.characters)}; protocol in docs/PROTOCOL.md; Ctrl-C stops", flush=True)
        if web_cfg is not None:
            from mfruntime.runtime.web.server import WebServer

            # With CURVE the page's server side is a client of the sockets too, with a key pair made for this run.
            web.append(WebServer(web_cfg, srv.control_address, srv.stream_address,
                                 keys=srv.local_client_keys()).start())
            print(f"mf serve: web page {web[0].address}/ (docs/WEB.md)", flush=True)

    try:
        server.serve_forever(on_ready=ready)  # generates on this (the main) thread
    finally:
        for w in web:
            w.close()
    print("mf serve: stopped", flush=True)
    return 0


def _add_session_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled model name or bundle path (default: {DEFAULT_MODEL})")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"auto, cpu or cuda[:N] (default: {DEFAULT_DEVICE})")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                   help=f"chunk-step backend (default: {DEFAULT_BACKEND}; auto = the fastest that works here)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"denoising steps per chunk: 1-4 live, 8-50 quality (default: {DEFAULT_STEPS})")
    p.add_argument("--threads", type=_threads_arg, default=DEFAULT_THREADS,
                   help="CPU threads for generation: a number, or auto = the cores other processes leave free, "
                        "re-measured every chunk (default: auto)")


def _threads_arg(value: str):
    from mfruntime.runtime.threads import check_threads

    try:
        return check_threads(value if value == "auto" else int(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mf", description="mfruntime: real-time talking characters (voice + face) from one causal model.")
    parser.add_argument("--version", action="version", version=f"mfruntime {__version__}")
    _add_log_flags(parser, default=False)
    # The same flags are accepted after a command too (mf data synth ... -q); SUPPRESS keeps the top-level value.
    leaf = _Parser(add_help=False)
    _add_log_flags(leaf, default=argparse.SUPPRESS)
    verbs = parser.add_subparsers(dest="verb", metavar="<command>", required=True, parser_class=_Parser)

    data = verbs.add_parser("data", help="make or inspect training data")
    data_verbs = data.add_subparsers(dest="action", metavar="<action>", required=True, parser_class=_Parser)

    synth = data_verbs.add_parser(
        "synth", parents=[leaf], help="write a synthetic talking-character corpus (mp4 + JSON ground truth)",
        description="Write N synthetic clips: eSpeak NG speech with random voices and a procedural face "
        "whose mouth follows the phonemes. Each clip is clip_XXXXX.mp4 (H.264 + AAC) with a JSON sidecar "
        "(text, voice, phoneme times, identity, per-frame mouth opening); corpus.json lists them.",
    )
    synth.add_argument("--out", required=True, help="output folder (created if missing; existing clips with the same names are overwritten)")
    synth.add_argument("--clips", type=int, default=200, help="number of clips (default: 200)")
    synth.add_argument("--seconds", type=float, default=4.0, help="length of each clip in seconds, 1-300 (default: 4)")
    synth.add_argument("--size", type=int, default=64, choices=(64, 128, 256), help="frame size in pixels (default: 64)")
    synth.add_argument("--seed", type=int, default=0, help="corpus seed; the same seed gives the same corpus (default: 0)")
    synth.add_argument("--workers", type=int, default=0, help="worker processes; 0 = one per CPU core (default: 0)")
    synth.set_defaults(func=_cmd_data_synth)

    scan = data_verbs.add_parser(
        "scan", parents=[leaf], help="decode a folder of clips and report usable, skipped and windowed clips",
        description="Decode every mp4/mkv/webm/mov below DIR the way training does (25 fps, 16 kHz mono, "
        "centre-crop, resize) and report usable clips, skipped files with the reason, and the train/validation split.",
    )
    scan.add_argument("dir", help="folder of clips (searched recursively)")
    scan.add_argument("--size", type=int, default=64, choices=(64, 128, 256), help="frame size in pixels (default: 64)")
    scan.add_argument("--window", type=float, default=1.92, help="window length in seconds (default: 1.92)")
    scan.add_argument("--val-fraction", type=float, default=0.1, help="fraction of clips held out for validation (default: 0.1)")
    scan.set_defaults(func=_cmd_data_scan)

    from mfruntime.training.recipe import STAGE_NAMES

    train = verbs.add_parser(
        "train", parents=[leaf], help="train one stage of the model from a recipe",
        description="Train one stage (codec-video, codec-audio, audio, video, joint, mutual; probe = the face "
        "probe of mf eval, syncnet = its SyncNet; rig = the rig head of the rig stream) with the settings "
        "of a recipe file. Output goes to RUNS/<preset>/<stage>/: metrics.jsonl, loss.png, checkpoints and "
        "final.safetensors. Under torchrun the same command trains with DistributedDataParallel.",
    )
    train.add_argument("--stage", required=True, choices=STAGE_NAMES, help="which stage to train")
    train.add_argument("--config", required=True, help="recipe file, e.g. recipes/tiny.toml")
    train.add_argument("--runs", default="runs", help="root folder for run outputs (default: runs)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage")
    train.add_argument("--fresh", action="store_true", help="delete an existing run of this stage and start over")
    train.set_defaults(func=_cmd_train)

    export = verbs.add_parser(
        "export", parents=[leaf], help="assemble trained stages into one model bundle (.safetensors)",
        description="Combine the final codecs and transformer of RUNS/<preset>/ into one bundle that "
        "mfruntime.model.bundle.load_model() (and later Session) loads by path.",
    )
    export.add_argument("--runs", default="runs", help="root folder of run outputs (default: runs)")
    export.add_argument("--preset", help="model preset whose runs to bundle (default: tiny; with --unpack: the bundle's)")
    export.add_argument("--transformer", default="mutual", choices=("mutual", "joint"),
                        help="which stage's transformer to bundle (default: mutual)")
    export.add_argument("--rig", default="auto", choices=("auto", "yes", "no"),
                        help="bundle the rig head (stage rig: the rig stream for 3D characters): auto = when that stage "
                        "has been trained (default)")
    export.add_argument("--out", help="output model bundle (.safetensors)")
    export.add_argument("--eval-out", help="write the evaluation instruments of mf eval (stages probe and syncnet) to this file")
    export.add_argument("--unpack", metavar="BUNDLE",
                        help="the reverse: write BUNDLE's codecs, transformer and rig head (a name like tiny, or a path) as the "
                        "final outputs of stages codec-video, codec-audio, joint (and rig) under RUNS/<preset>/, to train "
                        "later stages (mutual) from a shipped model")
    export.set_defaults(func=_cmd_export)

    ev = verbs.add_parser(
        "eval", parents=[leaf], help="score sync, quality, drift and speed on held-out clips (paper-shaped table)",
        description="Regenerate held-out synthetic clips (new sentences and faces) at several step counts, with "
        "and without the Mutual Forcing stage when --baseline is given, and report AV offset (ms), Fréchet "
        "distance on face-probe features, PESQ-wb, STOI, compute seconds per second of output and time to "
        "first chunk; plus metrics per window over a long generation (drift). Writes eval.json and PNG plots.",
    )
    ev.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name or bundle path, labelled 'Mutual Forcing' "
                    "in the table (default: tiny, the bundled joint-stage model)")
    ev.add_argument("--baseline", help="bundle of the same model without the Mutual Forcing stage for the "
                    "with/without rows (the bundled tiny is one: mf eval --model runs/tiny-mutual.safetensors "
                    "--baseline tiny)")
    ev.add_argument("--clips", type=int, default=8, help="held-out reference clips (default: 8)")
    ev.add_argument("--seconds", type=float, default=4.0, help="length of each reference clip (default: 4)")
    ev.add_argument("--steps", type=int, nargs="+", default=[50, 8, 4, 1], help="step counts to compare (default: 50 8 4 1)")
    ev.add_argument("--drift-seconds", type=float, default=30.0, help="length of the drift run, 0 to skip (default: 30)")
    ev.add_argument("--drift-steps", type=int, default=DEFAULT_STEPS,
                    help=f"step count of the drift run (default: {DEFAULT_STEPS})")
    ev.add_argument("--long", action="store_true", help="a 120-s drift run instead")
    ev.add_argument("--instruments", help="evaluation weights from mf export --eval-out (default: the bundled ones)")
    ev.add_argument("--inception-weights", metavar="FILE",
                    help="an Inception-v3 weights file you have (pt_inception-2015-12-05-*.pth for paper-comparable FID): "
                         "adds an FID column; nothing is downloaded")
    ev.add_argument("--out", default="runs/eval", help="output folder (default: runs/eval)")
    ev.add_argument("--cache", default="cache", help="where held-out reference clips are cached (default: cache)")
    ev.add_argument("--seeds", type=int, nargs="+", default=[0], help="generation noise seeds; with several, each row "
                    "is the mean over seeds and a second table gives the spread (std over seeds) (default: 0)")
    ev.add_argument("--max-step-size", type=float, metavar="D", help="show the network at most this step size d "
                    "(1/8–1) instead of the largest its training drew, e.g. 1 to measure what an out-of-range d does")
    ev.set_defaults(func=_cmd_eval)

    cmp_ = verbs.add_parser(
        "compare", parents=[leaf], help="mf eval results side by side, with paired differences and their spread",
        description="Read several eval.json files made with the same --clips, --seconds and --seeds and print each "
        "model's metrics (mean ± std over seeds) and its paired, seed-by-seed differences against a reference; a "
        "difference is marked better/worse only when every seed agrees and it exceeds the spread (docs/EVAL.md).",
    )
    cmp_.add_argument("results", nargs="+", help="LABEL=path/to/eval.json (or its folder), one per model")
    cmp_.add_argument("--reference", help="label the others are compared with (default: the first)")
    cmp_.add_argument("--steps", type=int, nargs="+", default=[50, 4, 1], help="step counts to show (default: 50 4 1)")
    cmp_.set_defaults(func=_cmd_compare)

    ss = verbs.add_parser(
        "score-sync", parents=[leaf], help="SyncNet lip-sync scores (LSE-D, LSE-C, offset) of any folder of clips",
        description="Score every clip below DIR with the project's SyncNet (mf train --stage syncnet): LSE-D "
        "(distance, lower is better), LSE-C (confidence, higher is better) and the audio offset (positive = audio late).",
    )
    ss.add_argument("dir", help="folder of clips (mp4/mkv/webm/mov, searched recursively)")
    ss.add_argument("--instruments", help="evaluation weights from mf export --eval-out (default: the bundled ones)")
    ss.set_defaults(func=_cmd_score_sync)

    demo = verbs.add_parser("demo", parents=[leaf], help="say a sentence with the bundled model and write demo.mp4",
                            description="Say a sentence with a Session and write an mp4 (H.264 + AAC); prints time to "
                            "first chunk and real-time factor.")
    demo.add_argument("--text", default=DEMO_TEXT, help="what to say")
    demo.add_argument("--out", default="demo.mp4", help="output mp4 (default: demo.mp4)")
    demo.add_argument("--image", help="character image (any RGB image file; default: the built-in face)")
    demo.add_argument("--renderer", choices=RENDERERS, default=DEFAULT_RENDERER,
                      help="what draws --image: 'model' redraws it as the model's own 64-px face; 'portrait' animates "
                      "it in its own framing, moved by the model's rig stream (a photo, painting or render: "
                      f"docs/PORTRAIT.md); 'auto' (default): 'model' up to {MODEL_IMAGE_MAX_SIDE} px, else 'portrait'")
    demo.add_argument("--size", type=int, default=None,
                      help=f"a portrait's long side, {PORTRAIT_SIZES[0]}–{PORTRAIT_SIZES[1]} px (default {DEFAULT_PORTRAIT_SIZE})")
    demo.add_argument("--voice", help="eSpeak NG voice, e.g. en-gb-x-rp+f2 (default: en-us+m3)")
    _add_session_flags(demo)
    demo.set_defaults(func=_cmd_demo)

    keys = verbs.add_parser("keys", parents=[leaf], help="make a CURVE key pair for mf serve and its clients",
                            description="Write NAME.key (public) and NAME.key_secret (secret, mode 600) into a folder: "
                            "one pair for the server, one per client. The server's --curve-clients folder holds the "
                            "authorised clients' NAME.key files. See docs/RUNTIME.md.")
    keys.add_argument("--out", default="keys", help="folder to write into (default: keys)")
    keys.add_argument("--name", required=True, help="key name, e.g. server or unity-editor")
    keys.set_defaults(func=_cmd_keys)

    serve = verbs.add_parser("serve", parents=[leaf], help="stream characters to game engines over ZeroMQ",
                             description="Serve characters: a ROUTER control socket (say, drive, idle, interrupt, "
                             "set_character, set_steps, set_outputs, ping, stats, state) and a PUB stream socket of chunks "
                             "[topic, msgpack header, video, pcm]. See docs/PROTOCOL.md.")
    serve.add_argument("--bind", default=DEFAULT_BIND, help=f"control address (default: {DEFAULT_BIND})")
    serve.add_argument("--stream", help="stream address (default: the control port + 1)")
    serve.add_argument("--character", action="append", default=None,
                       help="character id to create at start, repeatable (default: default)")
    serve.add_argument("--max-characters", type=int, default=DEFAULT_MAX_CHARACTERS,
                       help=f"most characters at once (default: {DEFAULT_MAX_CHARACTERS})")
    serve.add_argument("--min-steps", type=int, default=None,
                       help="fewest steps a chunk may get when a stream would fall behind (default: --steps, never "
                            "lowered); e.g. 1 for graceful overload")
    serve.add_argument("--no-admission", action="store_true",
                       help="take every line even when the running streams would fall behind (default: answer busy)")
    serve.add_argument("--web", nargs="?", const="http://127.0.0.1:8080", default=None, metavar="ADDR",
                       help="also serve the characters to browsers over WebRTC: a page and its signalling on ADDR "
                            "(default http://127.0.0.1:8080; docs/WEB.md)")
    serve.add_argument("--web-token", metavar="TOKEN",
                       help="access token browsers must give (?token=…); required when --web is not on loopback")
    serve.add_argument("--ray", metavar="ADDRESS",
                       help="run the characters on a Ray cluster (auto, or the head's HOST:PORT): this process is the "
                            "gateway, one server per Ray node with CPUs; --max-characters is then per node")
    serve.add_argument("--no-batch", action="store_true",
                       help="make each character's chunk on its own (default: characters speaking at once share "
                            "one forward per denoising step)")
    serve.add_argument("--send-hwm", type=int, default=DEFAULT_SEND_HWM,
                       help=f"messages queued per subscriber before a slow one misses chunks (default: {DEFAULT_SEND_HWM})")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow binding to non-loopback addresses (needs --curve-secret and --curve-clients)")
    serve.add_argument("--curve-secret", metavar="FILE",
                       help="the server's CURVE key pair (NAME.key_secret from mf keys): encrypts and authenticates "
                            "both sockets")
    serve.add_argument("--curve-clients", metavar="DIR",
                       help="folder of the authorised clients' public keys (*.key); others get nothing")
    _add_session_flags(serve)
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        return args.func(args)
    except UsageError as exc:
        print(f"mf: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, FloatingPointError, UserFacingError) as exc:
        print(f"mf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
