"""Time from `say` to the first chunk, through each client: `python -m benchmarks.bridges [--rounds 5]`.

One `mf serve` process (bundled model; backend, steps and threads as given, default: what `mf serve` uses) serves
three clients in turn, interleaved round by round so a noisy host hurts all of them alike, each saying a sentence
it has not said before (so eSpeak NG runs every time, as in a game):
  python  mfruntime.runtime.client (Client + Subscriber), in this process;
  csharp  the Unity bridge's console sample (unity_bridge/Samples~/Console/SayToWav.cs) under mono;
  cpp     the C++ client's example (cpp_client/examples/say_to_wav.cpp).
Each client is connected and subscribed before it says; the time runs from the say request to the first chunk of
that utterance. Needs mono-devel and the C++ client's build dependencies (see docs/BRIDGES.md).

`--player` instead times the C# and C++ Players on the engine's threads, without a server: a 20-s line of chunks
pushed (network thread), then played at 48 kHz stereo in 1024-frame blocks with a frame taken after each block
(benchmarks/bridge_player/: the best of 5 runs, per frame size).
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.control import new_lines
from mfruntime.runtime.client import Client, Subscriber
from mfruntime.runtime.process import serve_process

ROOT = Path(__file__).resolve().parent.parent


def need(*tools: tuple[str, str]) -> None:
    for tool, pkg in tools:
        if not shutil.which(tool):
            raise SystemExit(f"benchmarks.bridges: {tool} not found: apt-get install {pkg}")


def csharp(out: Path, program: Path) -> list[str]:
    """Compile the Unity bridge's core and one C# program against it (optimised); → the command that runs it."""
    core = out / "Mfruntime.Core.dll"
    if not core.exists():
        subprocess.run(["mcs", "-langversion:7.2", "-nologo", "-optimize+", "-target:library", f"-out:{core}",
                        *map(str, sorted((ROOT / "unity_bridge/Runtime/Core").glob("*.cs")))], check=True)
    exe = out / (program.stem + ".exe")
    subprocess.run(["mcs", "-langversion:7.2", "-nologo", "-optimize+", f"-out:{exe}", f"-r:{core}", str(program)],
                   check=True)
    return ["mono", str(exe)]


def build(out: Path) -> dict[str, list[str]]:
    """Compile the C# sample and the C++ example; → the command prefix of each client."""
    need(("mcs", "mono-devel"), ("mono", "mono-devel"), ("cmake", "cmake"))
    say_cs = csharp(out, ROOT / "unity_bridge/Samples~/Console/SayToWav.cs")
    cpp = ROOT / "build" / "cpp_client"
    subprocess.run(["cmake", "-S", str(ROOT / "cpp_client"), "-B", str(cpp), "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(cpp), "-j2", "--target", "say_to_wav"], check=True, stdout=subprocess.DEVNULL)
    return {"csharp": say_cs, "cpp": [str(cpp / "say_to_wav")]}


def python_ttfc(control: str, stream: str, text: str) -> float:
    with Subscriber(stream, characters=["default"]) as sub, Client(control, timeout=60) as ctl:
        ctl.request("ping")
        time.sleep(0.3)  # let the subscription reach the server, as the other clients do
        t0 = time.perf_counter()
        uid = ctl.request("say", character="default", text=text)["utterance"]
        first = None
        for chunk in sub.utterance(uid, timeout=60):
            if first is None:
                first = time.perf_counter() - t0
        return 1000 * first


def external_ttfc(kind: str, cmd: list[str], control: str, stream: str, text: str, wav: Path) -> float:
    args = ([text, str(wav), control] if kind == "csharp"
            else ["--control", control, "--stream", stream, "--text", text, "--out", str(wav)])
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} client failed: {r.stdout}{r.stderr}")
    m = re.search(r"first chunk:? ([0-9.]+) ms", r.stdout)
    if not m:
        raise RuntimeError(f"{kind} client printed no time to first chunk: {r.stdout}")
    return float(m.group(1))


def player_costs(sizes: list[int]) -> None:
    """Build and run the two Player benchmarks; print a table."""
    need(("mcs", "mono-devel"), ("mono", "mono-devel"), ("g++", "g++"))
    bench = ROOT / "benchmarks" / "bridge_player"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cs_bench = csharp(tmp, bench / "PlayerBench.cs")
        src = ROOT / "cpp_client" / "src"
        subprocess.run(["g++", "-O2", "-std=c++17", "-DMSGPACK_NO_BOOST", f"-I{ROOT / 'cpp_client/include'}",
                        str(bench / "player_bench.cpp"), *(str(src / f) for f in ("player.cpp", "resampler.cpp",
                                                                                  "protocol.cpp", "value.cpp")),
                        "-o", str(tmp / "player_bench"), "-lpthread"], check=True)
        print("| client | frame px | push µs per chunk | audio + frame µs per 1024-frame block | share of one core in real time |")
        print("|---|---:|---:|---:|---:|")
        for size in sizes:
            for cmd in (cs_bench, [str(tmp / "player_bench")]):
                out = subprocess.run(cmd + [str(size)], capture_output=True, text=True, check=True, cwd=tmp).stdout.split()
                name, push, read, share = out[0], float(out[1]), float(out[2]), float(out[3])
                print(f"| {'C#' if name == 'csharp' else 'C++'} | {size} | {push:.1f} | {read:.1f} | {100 * share:.2f} % |",
                      flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--player", action="store_true", help="time the C# and C++ Players instead (no server)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="frame sizes for --player")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", default="auto")
    args = ap.parse_args()
    if args.player:
        player_costs(args.sizes)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmds = build(tmp)
        times: dict[str, list[float]] = {"python": [], "csharp": [], "cpp": []}
        with serve_process(backend=args.backend, steps=args.steps, threads=args.threads) as (control, stream):
            python_ttfc(control, stream, "Warm up the server first.")
            lines = iter(new_lines(3 * args.rounds, round_no=int(time.time()) % 1000))
            for r in range(args.rounds):
                for kind in times:
                    text = next(lines)
                    ms = (python_ttfc(control, stream, text) if kind == "python"
                          else external_ttfc(kind, cmds[kind], control, stream, text, tmp / f"{kind}.wav"))
                    times[kind].append(ms)
                    print(f"round {r + 1} {kind:7s} {ms:7.1f} ms", flush=True)
    print(f"\nsay -> first chunk, mf serve --backend {args.backend} --steps {args.steps} --threads {args.threads}, "
          f"{args.rounds} rounds")
    print(f"| client | median ms | min ms | max ms |\n|---|---:|---:|---:|")
    for kind, ms in times.items():
        print(f"| {kind} | {statistics.median(ms):.1f} | {min(ms):.1f} | {max(ms):.1f} |")


if __name__ == "__main__":
    main()
