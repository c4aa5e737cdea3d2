"""``mf compare``: several ``mf eval`` results side by side, with paired differences against a reference.

Every ``eval.json`` written with ``--seeds`` holds one row per (variant, steps, seed) in ``per_seed``. Runs
made with the same ``--clips``, ``--seconds`` and ``--seeds`` score the same held-out clips from the same
noise, so their per-seed scores pair up: the difference of a metric between two models is computed seed by
seed, and reported as mean ± std over seeds (sample std). A difference is called **beyond the spread** only when
every seed agrees on its sign and its mean exceeds both models' own spread (std over the paired seeds) and the
std of the paired differences; otherwise the table says "~" (no claim).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfruntime.errors import UserFacingError

#: Metrics compared, with the direction that is better.
METRICS: dict[str, str] = {"fd": "lower", "stoi": "higher", "pesq": "higher", "offset_std_ms": "lower",
                           "abs_offset_ms": "lower", "confidence": "higher", "identity_error": "lower"}


@dataclass(frozen=True)
class Result:
    label: str
    config: dict
    per_seed: list[dict]  # rows: variant, steps, seed, metrics

    def scores(self, variant: str, steps: int, metric: str) -> dict[int, float]:
        return {r["seed"]: r[metric] for r in self.per_seed
                if r["variant"] == variant and r["steps"] == steps and r.get(metric) is not None}


def load_result(spec: str) -> Result:
    """``LABEL=path/to/eval.json`` or a path (labelled by its folder)."""
    label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = Path(path)
    if p.is_dir():
        p = p / "eval.json"
    if not p.is_file():
        raise UserFacingError(f"{p}: no such eval result (write one with mf eval --out DIR)")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserFacingError(f"{p}: not an mf eval result ({exc})") from exc
    if "per_seed" not in doc:
        raise UserFacingError(f"{p}: made by an older mf eval without per-seed rows: evaluate again with this version")
    return Result(label or p.parent.name, doc["config"], doc["per_seed"])


def _same_protocol(a: Result, b: Result) -> None:
    keys = ("clips", "seconds", "seeds", "instruments")
    if any(a.config.get(k) != b.config.get(k) for k in keys):
        raise UserFacingError(f"{a.label} and {b.label} were evaluated differently "
                              f"({', '.join(f'{k} {a.config.get(k)} vs {b.config.get(k)}' for k in keys)}): "
                              "paired differences need the same --clips, --seconds, --seeds and --instruments")


def paired(a: Result, b: Result, variant_a: str, variant_b: str, steps: int, metric: str) -> dict | None:
    """a − b for one metric, seed by seed: mean, std, and whether it is beyond the spread (and which is better)."""
    sa, sb = a.scores(variant_a, steps, metric), b.scores(variant_b, steps, metric)
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return None
    diffs = np.array([sa[s] - sb[s] for s in seeds])
    std = (lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)  # noqa: E731  sample std: few seeds
    spread = max(std([sa[s] for s in seeds]), std([sb[s] for s in seeds]), std(diffs))
    mean = float(diffs.mean())
    beyond = len(seeds) > 1 and (np.all(diffs > 0) or np.all(diffs < 0)) and abs(mean) > spread
    better = None
    if beyond:
        better = (mean < 0) == (METRICS[metric] == "lower")
    return {"mean": mean, "std": std(diffs), "seeds": len(seeds), "beyond_spread": bool(beyond),
            "a_better": better}


def format_comparison(results: list[Result], reference: str, steps: list[int]) -> str:
    by_label = {r.label: r for r in results}
    if reference not in by_label:
        raise UserFacingError(f"--reference {reference!r} is none of the results ({', '.join(by_label)})")
    ref = by_label[reference]
    for r in results:
        _same_protocol(r, ref)
    lines = []
    head = f"{'model':<22}{'steps':>6}" + "".join(f"{m:>17}" for m in METRICS)
    lines += ["means ± std over seeds", head, "-" * len(head)]
    for r in results:
        for n in steps:
            cells = []
            for m in METRICS:
                v = list(r.scores("mutual", n, m).values())
                cells.append(f"{np.mean(v):>10.3f} ± {np.std(v):<4.2f}" if v else f"{'—':>17}")
            if any(c.strip() != "—" for c in cells):
                lines.append(f"{r.label:<22}{n:>6}" + "".join(cells))
    lines += ["", f"paired differences vs {reference} (model − {reference}; + better, - worse, ~ within the spread)", head,
              "-" * len(head)]
    for r in results:
        if r is ref:
            continue
        for n in steps:
            cells = []
            for m in METRICS:
                d = paired(r, ref, "mutual", "mutual", n, m)
                if d is None:
                    cells.append(f"{'—':>17}")
                    continue
                mark = "~" if not d["beyond_spread"] else ("+" if d["a_better"] else "-")
                cells.append(f"{d['mean']:>+10.3f} ± {d['std']:<3.2f}{mark}")
            if any(c.strip() != "—" for c in cells):
                lines.append(f"{r.label:<22}{n:>6}" + "".join(cells))
    drive = [r for r in results if r.scores("drive", r.config.get("drift_steps", 4), "offset_ms")]
    if drive:
        lines += ["", "audio-driven rows (offset ms, mean over seeds of the mean over clips ± std over seeds)"]
        for r in drive:
            n = r.config.get("drift_steps", 4)
            off = list(r.scores("drive", n, "offset_ms").values())
            spread = list(r.scores("drive", n, "offset_std_ms").values())
            lines.append(f"{r.label:<22}{n:>6}  offset {np.mean(off):+.1f} ± {np.std(off):.1f}, "
                         f"spread over clips {np.mean(spread):.1f} ms")
    return "\n".join(lines)
