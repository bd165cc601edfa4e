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
import email
import json
import sys
import sysconfig
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
    rows += [_benign(t, "docs", f"docs:{name}") for name, t in _long_texts(_docs())]
    rows += [_benign(t, "readme", f"readme:{name}") for name, t in _long_texts(_readmes())]
    return rows


FORBIDDEN = (
    "spikee", "agentdojo", "promptfoo", "prompt-security", "prompt_security", "llamator",
    "giskard", "langkit", "agent-injection", "agent_injection", "presidio",
)  # fmt: skip


def _benign(text: str, source: str, group: str) -> dict[str, Any]:
    return {"text": text, "label": "benign", "group": group, "source_pkg": source}


def _docs() -> list[tuple[str, str]]:
    """This repository's docs (guards.md aside: its examples are attacks on purpose)."""
    return [(d.stem, d.read_text()) for d in sorted((ROOT / "docs").glob("*.md"))
            if d.name != "guards.md"]  # fmt: skip


def _readmes() -> list[tuple[str, str]]:
    """The long descriptions (READMEs) of the installed packages: long benign technical text,
    full of "instructions", "system", "ignore" and "override" used innocently."""
    site = Path(sysconfig.get_paths()["purelib"])
    out = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        name = meta.parent.name.split("-")[0].lower()
        if any(f in name for f in FORBIDDEN):
            continue
        body = email.message_from_string(meta.read_text(errors="replace")).get_payload()
        if isinstance(body, str) and len(body) > 500:
            out.append((name, body))
    return out


def _long_texts(sources: list[tuple[str, str]], size: int = 2000) -> list[tuple[str, str]]:
    """Each source as paragraphs (> 80 characters) and chunks of about ``size`` characters
    (at most three of each per source), so the model sees long benign text as well as short."""
    out = []
    for name, text in sources:
        paras = [p for p in text.split("\n\n") if len(p) > 80]
        out += [(name, p) for p in paras[:3]]
        chunk = ""
        chunks = []
        for p in paras:
            chunk = f"{chunk}\n\n{p}" if chunk else p
            if len(chunk) >= size:
                chunks.append(chunk[: size * 2])
                chunk = ""
        out += [(name, c) for c in chunks[:3]]
    return out


def fit(feats: list[dict[str, float]], labels: list[bool], c: float = C) -> LinearModel:
    """A logistic regression on features (of normalised texts) seen in at least MIN_DF rows."""
    df: Counter[str] = Counter(name for f in feats for name in f)
    keep = {n for n, c in df.items() if c >= MIN_DF or n.startswith("r:")}
    feats = [{n: v for n, v in f.items() if n in keep} for f in feats]
    vec = DictVectorizer()
    x = vec.fit_transform(feats)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=0)
    clf.fit(x, labels)
    coef = clf.coef_[0]
    names = vec.get_feature_names_out()
    order = sorted(range(len(coef)), key=lambda i: -abs(coef[i]))[:MAX_FEATURES]
    weights = {str(names[i]): round(float(coef[i]), 5) for i in order if abs(coef[i]) > 1e-4}
    return LinearModel(weights=weights, bias=float(clf.intercept_[0]))


def cross_validate(rows: list[dict[str, Any]], c: float, splits: int = 5) -> list[float]:
    texts = [r["text"] for r in rows]
    labels = [r["label"] == "attack" for r in rows]
    groups = [r["group"] for r in rows]
    feats = [features(normalize(t)) for t in texts]
    oof = [0.0] * len(rows)
    for k, (train, test) in enumerate(GroupKFold(n_splits=splits).split(texts, labels, groups)):
        model = fit([feats[i] for i in train], [labels[i] for i in train], c)
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
    parser.add_argument("--c", type=float, default=C, help="inverse regularisation strength")
    parser.add_argument("--oof", type=Path, help="write the out-of-fold scores here (JSON lines)")
    args = parser.parse_args()
    rows = load_rows(args.data)
    labels = [r["label"] == "attack" for r in rows]
    meta: dict[str, Any] = {"rows": len(rows), "attacks": sum(labels), "C": args.c}
    meta["min_df"] = MIN_DF
    threshold = 0.5
    if not args.no_cv:
        oof = cross_validate(rows, args.c)
        if args.oof:
            with args.oof.open("w") as out:
                for row, score in zip(rows, oof, strict=True):
                    out.write(json.dumps({**row, "score": round(score, 4)}) + "\n")
        # the READMEs are easy benign rows: they would make 1% of false positives look cheaper
        tuning = [i for i, r in enumerate(rows) if r["source_pkg"] != "readme"]
        threshold = pick_threshold([labels[i] for i in tuning], [oof[i] for i in tuning])
        added = ("handwritten", "docs", "readme")
        dev = [i for i, r in enumerate(rows) if r["source_pkg"] not in added]
        meta["cv_all"] = report(labels, oof, threshold)
        meta["cv_dev_only"] = report([labels[i] for i in dev], [oof[i] for i in dev], threshold)
        meta["cv_dev_tpr_at_fpr_1pct"] = tpr_at_fpr(
            [labels[i] for i in dev], [oof[i] for i in dev], 0.01
        )
        meta["cv_per_group"] = per_group(rows, oof, threshold)
    model = fit([features(normalize(r["text"])) for r in rows], labels, args.c)
    model = LinearModel(model.weights, model.bias, threshold, meta)
    meta["latency_2kb"] = latency(model, rows)
    model.save(args.out)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
