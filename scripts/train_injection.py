"""Train the injection classifier and write src/shipyard/guard/injection/model.json.gz.

    .venv/bin/uv sync --group train --inexact && .venv/bin/python scripts/train_injection.py

Reads ``--data`` (default ../shared/data/security/injection_dev.jsonl, rows with ``text``,
``label`` attack|benign, ``category``, ``source_pkg``), adds the hand-written rows of
``injection_corpus.py`` and paragraphs of this repository's docs (benign technical prose),
then:

1. cross-validates with GroupKFold: a group is one (source_pkg, category) of the data set or
   one hand-written family, so a template family is never on both sides;
2. picks the threshold at which the out-of-fold benign scores give at most ~1% false positives;
3. fits on everything and saves the weights, the threshold and the cross-validated numbers.

Deterministic (fixed folds and seeds). scikit-learn is needed here only (``--group train``);
scoring uses the plain-Python model in the package.
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
from sklearn.model_selection import GroupKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from injection_corpus import corpus  # noqa: E402

from shipyard.guard.injection.evaluate import report, timed, tpr_at_fpr  # noqa: E402
from shipyard.guard.injection.features import features  # noqa: E402
from shipyard.guard.injection.model import MODEL_PATH, LinearModel  # noqa: E402
from shipyard.guard.injection.normalize import normalize  # noqa: E402

MIN_DF = 2
MAX_FEATURES = 60_000
C = 4.0


def load_rows(data: Path) -> list[dict[str, Any]]:
    rows = []
    for line in data.read_text().splitlines():
        row = json.loads(line)
        row["group"] = f"{row['source_pkg']}/{row['category']}"
        rows.append(row)
    rows += corpus()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name == "guards.md":  # its examples are attacks on purpose
            continue
        for para in doc.read_text().split("\n\n"):
            if len(para) > 80:
                rows.append(
                    {"text": para, "label": "benign", "group": "hw-docs", "source_pkg": "docs"}
                )
    return rows


def fit(texts: list[str], labels: list[bool]) -> LinearModel:
    feats = [features(normalize(t)) for t in texts]
    df: Counter[str] = Counter(name for f in feats for name in f)
    keep = {n for n, c in df.items() if c >= MIN_DF or n.startswith("r:")}
    feats = [{n: v for n, v in f.items() if n in keep} for f in feats]
    vec = DictVectorizer()
    x = vec.fit_transform(feats)
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=0)
    clf.fit(x, labels)
    coef = clf.coef_[0]
    names = vec.get_feature_names_out()
    order = sorted(range(len(coef)), key=lambda i: -abs(coef[i]))[:MAX_FEATURES]
    weights = {str(names[i]): round(float(coef[i]), 5) for i in order if abs(coef[i]) > 1e-4}
    return LinearModel(weights=weights, bias=float(clf.intercept_[0]))


def cross_validate(rows: list[dict[str, Any]], splits: int = 5) -> list[float]:
    texts = [r["text"] for r in rows]
    labels = [r["label"] == "attack" for r in rows]
    groups = [r["group"] for r in rows]
    oof = [0.0] * len(rows)
    for k, (train, test) in enumerate(GroupKFold(n_splits=splits).split(texts, labels, groups)):
        model = fit([texts[i] for i in train], [labels[i] for i in train])
        for i in test:
            oof[i] = model.score(texts[i])
        held = sorted({groups[i] for i in test})
        print(f"fold {k}: held out {held}", file=sys.stderr)
    return oof


def pick_threshold(labels: list[bool], scores: list[float], fpr: float = 0.01) -> float:
    benign = sorted((s for y, s in zip(labels, scores, strict=True) if not y), reverse=True)
    cut = benign[int(fpr * len(benign))]
    return min(0.99, max(0.5, cut + 1e-4))


def per_group(rows: list[dict[str, Any]], scores: list[float], t: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in sorted({r["group"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["group"] == g]
        flagged = sum(1 for i in idx if scores[i] >= t)
        out[g] = {"n": len(idx), "label": rows[idx[0]]["label"], "flagged": flagged}
    return out


def latency(model: LinearModel, rows: list[dict[str, Any]]) -> dict[str, float]:
    texts = []
    for r in rows[:400]:
        text = r["text"]
        while len(text) < 2048:
            text += " " + text
        texts.append(text[:2048])
    return timed(model.score, texts)[1]


def _default_data() -> Path:
    """../shared/data/security/injection_dev.jsonl beside the checkout (or a worktree's)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        path = base / "shared/data/security/injection_dev.jsonl"
        if path.exists():
            return path
    return ROOT.parent / "shared/data/security/injection_dev.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    args = parser.parse_args()
    rows = load_rows(args.data)
    labels = [r["label"] == "attack" for r in rows]
    meta: dict[str, Any] = {"rows": len(rows), "attacks": sum(labels), "C": C, "min_df": MIN_DF}
    threshold = 0.5
    if not args.no_cv:
        oof = cross_validate(rows)
        threshold = pick_threshold(labels, oof)
        dev = [i for i, r in enumerate(rows) if r["source_pkg"] not in ("handwritten", "docs")]
        meta["cv_all"] = report(labels, oof, threshold)
        meta["cv_dev_only"] = report([labels[i] for i in dev], [oof[i] for i in dev], threshold)
        meta["cv_dev_tpr_at_fpr_1pct"] = tpr_at_fpr(
            [labels[i] for i in dev], [oof[i] for i in dev], 0.01
        )
        meta["cv_per_group"] = per_group(rows, oof, threshold)
    model = fit([r["text"] for r in rows], labels)
    model = LinearModel(model.weights, model.bias, threshold, meta)
    meta["latency_2kb"] = latency(model, rows)
    model.save(args.out)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
