"""Train the learned router and write src/shipyard/models/router/model.json.gz.

    .venv/bin/uv sync --group train --inexact && .venv/bin/python scripts/train_router.py

Reads ``--data`` (default ../shared/data/routing/routellm_mmlu_dev.jsonl: MMLU questions with
the outcome of a strong and a weak model; contaminated rows dropped, as its README says), then:

1. cross-validates with GroupKFold grouped by ``category`` (the MMLU subject, one source file
   each), so every score is for a subject the model never saw in training: the numbers are
   those of data the router was not trained on, never of training rows; then again on random
   held-out shares of the questions (StratifiedKFold by subject: unseen questions of subjects
   seen in training), reported apart;
2. records, from the out-of-fold scores, the score cut-offs for a target share of strong calls
   and the share of strong calls that recovers a target share of the quality gap (how
   ``Learned(strong_share=...)`` and ``Learned(quality=...)`` set their threshold);
3. fits on every row and saves the weights with the cross-validated numbers.

The label is "the strong model is needed": the weak model got the question wrong and the strong
one right. Deterministic (fixed folds, seeds). scikit-learn is needed here only
(``--group train``); scoring uses the plain-Python model in the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from shipyard.guard.injection.evaluate import timed  # noqa: E402
from shipyard.models.router.features import features  # noqa: E402
from shipyard.models.router.learned_model import MODEL_PATH, RouterWeights  # noqa: E402
from shipyard.models.router.metrics import curve, outcomes, report, summarize  # noqa: E402

MIN_DF = 3
MAX_FEATURES = 40_000
C = 0.5
SPLITS = 5


def load_rows(data: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    return [r for r in rows if not r.get("contaminated")]


def label(row: dict[str, Any]) -> bool:
    return bool(row["strong_score"] > row["weak_score"])


def fit(feats: list[dict[str, float]], labels: list[bool], c: float = C) -> RouterWeights:
    """A logistic regression on features seen in at least MIN_DF rows."""
    df: Counter[str] = Counter(name for f in feats for name in f)
    keep = {n for n, k in df.items() if k >= MIN_DF}
    feats = [{n: v for n, v in f.items() if n in keep} for f in feats]
    vec = DictVectorizer()
    x = vec.fit_transform(feats)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=0)
    clf.fit(x, labels)
    coef = clf.coef_[0]
    names = vec.get_feature_names_out()
    order = sorted(range(len(coef)), key=lambda i: -abs(coef[i]))[:MAX_FEATURES]
    weights = {str(names[i]): round(float(coef[i]), 5) for i in order if abs(coef[i]) > 1e-4}
    return RouterWeights(weights=weights, bias=float(clf.intercept_[0]))


def cross_validate(
    rows: list[dict[str, Any]], c: float, grouped: bool = True
) -> tuple[list[float], list[Any]]:
    """Out-of-fold scores and the summary of each fold on its own held-out rows. ``grouped``:
    folds by subject (a model never saw the row's subject); else a random held-out share of
    the questions (stratified by subject: new questions of subjects seen in training)."""
    feats = [features(r["prompt"]) for r in rows]
    labels = [label(r) for r in rows]
    groups = [r["category"] for r in rows]
    oof = [0.0] * len(rows)
    folds = []
    splits = (
        GroupKFold(n_splits=SPLITS).split(feats, labels, groups)
        if grouped
        else StratifiedKFold(n_splits=SPLITS, shuffle=True, random_state=0).split(feats, groups)
    )
    for train, test in splits:
        model = fit([feats[i] for i in train], [labels[i] for i in train], c)
        for i in test:
            oof[i] = model.score(rows[i]["prompt"])
        held = [rows[i] for i in test]
        fold = report(held, {"learned": lambda p, m=model: m.score(p)})
        folds.append({k: _rounded(v) for k, v in fold.items()})
    return oof, folds


def _rounded(summary: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in summary.items()}


def thresholds(rows: list[dict[str, Any]], oof: list[float]) -> dict[str, Any]:
    """Score cut-offs by share of strong calls, and the share needed per PGR target."""
    ranked = sorted(oof, reverse=True)
    shares = [round(x / 20, 2) for x in range(1, 20)]
    cutoffs = {str(s): round(ranked[int(s * len(ranked))], 5) for s in shares}
    cutoffs["0.0"], cutoffs["1.0"] = 1.0, 0.0
    o = outcomes(rows)
    frac, quality, _ = curve(oof, o)
    q_weak = sum(o.qw) / len(o.qw)
    gap = sum(o.qs) / len(o.qs) - q_weak
    pgr = [(q - q_weak) / gap for q in quality]
    needed = {}
    for target in [round(x / 20, 2) for x in range(0, 21)]:
        ok = [k for k, p in enumerate(pgr) if p >= target]
        needed[str(target)] = round(frac[ok[0]] if ok else 1.0, 4)
    return {"share_cutoffs": cutoffs, "quality_shares": needed}


def latency(model: RouterWeights, rows: list[dict[str, Any]]) -> dict[str, float]:
    texts = [r["prompt"] for r in rows[:2000]]
    return timed(model.score, texts)[1]


def _default_data() -> Path:
    for base in (ROOT.parent, ROOT.parent.parent):
        path = base / "shared/data/routing/routellm_mmlu_dev.jsonl"
        if path.exists():
            return path
    return ROOT.parent / "shared/data/routing/routellm_mmlu_dev.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--c", type=float, default=C, help="inverse regularisation strength")
    parser.add_argument(
        "--grouped-only", action="store_true", help="skip the random (seen-subject) folds"
    )
    args = parser.parse_args()
    rows = load_rows(args.data)
    labels = [label(r) for r in rows]
    meta: dict[str, Any] = {"rows": len(rows), "strong_needed": sum(labels), "C": args.c}
    meta.update(min_df=MIN_DF, cv=f"GroupKFold({SPLITS}) by category")
    oof, folds = cross_validate(rows, args.c)
    pooled = report(rows, {})
    pooled["learned"] = summarize(oof, outcomes(rows))
    meta["cv_pooled"] = {k: _rounded(v) for k, v in pooled.items()}
    meta["cv_folds"] = folds
    meta.update(thresholds(rows, oof))
    if not args.grouped_only:
        shared, shared_folds = cross_validate(rows, args.c, grouped=False)
        random_split = report(rows, {})
        random_split["learned"] = summarize(shared, outcomes(rows))
        meta["cv_seen_subjects_pooled"] = {k: _rounded(v) for k, v in random_split.items()}
        meta["cv_seen_subjects_folds"] = shared_folds
    model = fit([features(r["prompt"]) for r in rows], labels, args.c)
    model = RouterWeights(model.weights, model.bias, meta)
    meta["latency"] = latency(model, rows)
    model.save(args.out)
    print(json.dumps({k: v for k, v in meta.items() if not k.endswith("folds")}, indent=1))
    for fold in folds:
        print(json.dumps({k: v["APGR"] for k, v in fold.items()}))


if __name__ == "__main__":
    main()
