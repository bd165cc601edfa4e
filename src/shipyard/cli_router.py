"""``shipyard router score|eval [ROUTER]``: a learned router's scores, and its offline quality.

``score`` reads JSON lines with ``prompt`` on stdin and writes each back with ``score`` added
(higher: the strong model is needed). ``eval`` reads labelled rows (``prompt``,
``strong_score``, ``weak_score`` and the models' tokens or costs, as in the routing data set)
and prints APGR, CPT(50%), CPT(80%) and the cost saved at 80% and 95% of the quality gap
recovered, beside the random and prompt-length baselines, with the p50/p99 cost of a decision.
ROUTER is a weights file, or the name of a ``Learned`` router of the app (``--app``); without
it, the router shipped with the package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli_lines import fail, json_rows
from shipyard.errors import ConfigError
from shipyard.models.router.learned_model import RouterWeights

router_cli = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Score prompts with the learned router, or measure it on labelled data.",
)

RouterArg = Annotated[
    str | None,
    typer.Argument(help="A weights file, or a Learned router of the app (default: shipped)."),
]
AppOpt = Annotated[
    str | None, typer.Option("--app", help="The app whose routers to look in, module:attribute.")
]
LABELS = ("prompt", "strong_score", "weak_score")


def weights_of(router: str | None, app: str | None) -> RouterWeights:
    """The weights ROUTER names (see the module docstring)."""
    from shipyard.models.router import Learned
    from shipyard.models.router.learned_model import default_weights, load_weights

    if router is None:
        return default_weights()
    if Path(router).is_file():
        try:
            return load_weights(Path(router))
        except (OSError, ValueError, KeyError) as exc:
            raise fail(f"{router}: not a router weights file ({exc})") from None
    from shipyard.app import load_app

    try:
        found = {r.name: r for r in load_app(app).routers}
    except ConfigError as exc:
        raise fail(exc.message) from None
    if router not in found:
        raise fail(f"no router {router!r} in the app; it has: {', '.join(found) or 'none'}")
    strategy = found[router].strategy
    if not isinstance(strategy, Learned):
        raise fail(f"router {router!r} is not a learned router: it has no scores")
    return strategy.model


@router_cli.command("score")
def score(router: RouterArg = None, app: AppOpt = None) -> None:
    """Read JSON lines with 'prompt' on stdin; write each with 'score' added (higher: the
    strong model is needed)."""
    weights = weights_of(router, app)
    for row in json_rows(iter(sys.stdin), "stdin", "prompt"):
        row["score"] = round(weights.score(row["prompt"]), 4)
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()


@router_cli.command("eval")
def evaluate(
    args: Annotated[
        list[str], typer.Argument(metavar="[ROUTER] FILE", help="ROUTER as for score; FILE.jsonl.")
    ],
    app: AppOpt = None,
) -> None:
    """Measure the router on FILE's labelled rows (contaminated ones dropped): APGR, CPT(50%),
    CPT(80%), cost saved at 80% and 95% of the gap, beside random and prompt length."""
    if len(args) > 2:
        raise fail("expected [ROUTER] FILE")
    router, file = (None, Path(args[0])) if len(args) == 1 else (args[0], Path(args[1]))
    if not file.is_file():
        raise fail(f"{file}: no such file")
    from shipyard.guard.injection.evaluate import timed
    from shipyard.models.router.metrics import report

    weights = weights_of(router, app)
    with file.open(encoding="utf-8") as lines:
        rows = [
            r for r in json_rows(lines, str(file), "prompt", LABELS) if not r.get("contaminated")
        ]
    if not rows:
        raise fail(f"{file}: no labelled rows")
    scores, latency = timed(weights.score, [r["prompt"] for r in rows])
    by_prompt = dict(zip((r["prompt"] for r in rows), scores, strict=False))
    try:
        found = report(rows, {"router": by_prompt.__getitem__})
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        raise fail(f"{file}: rows need tokens and models, or costs ({exc!r})") from None
    out: dict[str, Any] = {"rows": len(rows), "decision": latency}
    keys = ("APGR", "CPT(50%)", "CPT(80%)", "saved@PGR80%", "saved@PGR95%")
    for name, summary in found.items():
        out[name] = {k: None if summary[k] is None else round(summary[k] or 0.0, 4) for k in keys}
    typer.echo(json.dumps(out, indent=1))
