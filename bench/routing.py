"""The model router (``--only routing``), in process: no server, so the numbers are the
router's own cost, not HTTP's.

- decision: CPU time of one routing decision of the shipped learned router (features, score,
  threshold) over prompts of the development data, p50 and p99 (issue target: p99 <= 1 ms);
- overhead: a stateless run of an echo agent through ``router:bench`` (learned, two scripted
  candidates) against the same agent on ``scripted:echo``, interleaved, CPU per run;
- quality: the router's APGR, CPT and savings cross-validated on held-out MMLU subjects, as
  ``scripts/train_router.py`` recorded them in the shipped weights, beside the baselines.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from bench.common import BenchConfig, BenchResult, Column, Row, progress

ROOT = Path(__file__).resolve().parents[1]
DATA = "shared/data/routing/routellm_mmlu_dev.jsonl"  # beside the checkout (or a worktree's)
FALLBACK_PROMPTS = [
    "What is the capital of France?\nA. Paris\nB. Rome\nC. Oslo\nD. Bern\nAnswer:",
    "Statement 1 | Every group of order p^2 is abelian. Statement 2 | ...\nAnswer:",
]
COLUMNS = [
    Column("what", "what"),
    Column("value", "value"),
    Column("note", "note"),
]
TARGET_P99_MS = 1.0


def _prompts(limit: int) -> list[str]:
    for path in (ROOT.parent / DATA, ROOT.parent.parent / DATA):
        if path.exists():
            with path.open() as lines:
                return [json.loads(line)["prompt"] for line in itertools.islice(lines, limit)]
    return FALLBACK_PROMPTS * (limit // 2)


def _decisions(prompts: list[str]) -> dict[str, float]:
    from shipyard.guard.injection.evaluate import timed
    from shipyard.models.base import ModelRequest, UserMessage
    from shipyard.models.resolver import ModelResolver
    from shipyard.models.router import Learned, Router, RouterModel

    router = Router("bench", ["scripted:echo", "openai:gpt-4.1"], Learned())
    model = ModelResolver(routers=[router]).resolve("router:bench")
    assert isinstance(model, RouterModel)
    requests = {p: ModelRequest(messages=(UserMessage(content=p),)) for p in prompts}
    model.decide(requests[prompts[0]])  # load the weights outside the measure
    return timed(lambda p: float(bool(model.decide(requests[p]))), prompts)[1]


async def _per_run_cpu_ms(runs: int) -> dict[str, float]:
    from shipyard import Agent
    from shipyard.agents.context import RunRequest
    from shipyard.models.resolver import ModelResolver
    from shipyard.models.router import Learned, Router, RouteScopeHook
    from shipyard.runtime.invoke import Invoker, RunLimits

    router = Router("bench", ["scripted:echo", "scripted:echo?delay_ms=0"], Learned())
    agents: dict[str, Any] = {
        "plain": Agent("plain", model="scripted:echo"),
        "routed": Agent("routed", model="router:bench"),
    }
    invoker = Invoker(
        agents,
        None,
        RunLimits(default_model="scripted:echo"),
        models=ModelResolver(routers=[router]),
        hooks=[RouteScopeHook()],
    )
    spent = {"plain": 0.0, "routed": 0.0}
    for i in range(runs + 20):
        for name in ("plain", "routed"):
            start = time.process_time()
            await invoker.invoke(RunRequest(tenant_id="t", agent=name, input=f"q {i}"))
            if i >= 20:  # warm-up
                spent[name] += time.process_time() - start
    return {name: total / runs * 1000 for name, total in spent.items()}


def _quality() -> dict[str, Any]:
    """The cross-validated summaries: every router on unseen subjects, the learned one on
    unseen questions of seen subjects too."""
    from shipyard.models.router.learned_model import default_weights

    meta = default_weights().meta
    out = {f"{k} (unseen subjects)": v for k, v in meta.get("cv_pooled", {}).items()}
    seen = meta.get("cv_seen_subjects_pooled", {}).get("learned")
    if seen:
        out["learned (seen subjects)"] = seen
    return out


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("routing", COLUMNS)
    size = max(200, int(config.duration * 400))
    latency = _decisions(_prompts(size))
    passed = "PASS" if latency["p99_ms"] <= TARGET_P99_MS else "MISS"
    rows: list[Row] = [
        {"what": "decision p50", "value": f"{latency['p50_ms']:.3f} ms", "note": f"{size} prompts"},
        {"what": "decision p99", "value": f"{latency['p99_ms']:.3f} ms", "note": passed},
    ]
    progress(f"routing decision: p50 {latency['p50_ms']:.3f} ms, p99 {latency['p99_ms']:.3f} ms")
    runs = max(50, int(config.duration * 100))
    cpu = await _per_run_cpu_ms(runs)
    extra = cpu["routed"] - cpu["plain"]
    rows.append({"what": "run CPU plain", "value": f"{cpu['plain']:.3f} ms", "note": "echo"})
    rows.append(
        {"what": "run CPU routed", "value": f"{cpu['routed']:.3f} ms", "note": f"{extra:+.3f} ms"}
    )
    for name, summary in _quality().items():
        cells = f"APGR {summary['APGR']:.3f}, CPT(80%) {summary['CPT(80%)']:.3f}"
        saved = summary.get("saved@PGR80%")
        rows.append({"what": f"CV {name}", "value": cells, "note": f"saved@80% gap {saved:.3f}"})
    result.rows = rows
    result.summary.append(f"decision p99 {latency['p99_ms']:.3f} ms: target <= 1 ms -> {passed}")
    result.summary.append(
        "quality: out-of-fold (train_router.py): GroupKFold(5) by MMLU subject, and "
        "StratifiedKFold(5) for seen subjects"
    )
    return result
