"""An experiment kept for the record: do WordLlama embeddings help the injection classifier?

    .venv/bin/uv sync --group train --inexact && .venv/bin/python scripts/injection_embeddings_cv.py

The same rows and the same grouped 5-fold cross-validation as ``train_injection.py``. In each
fold it fits the shipped model (n-grams and rules) and, beside it, a logistic regression on the
256-dimension WordLlama embedding of the normalised text (the package's shipped weights, no
download); then it prints the TPR at 1% FPR of each out-of-fold score and of two combinations
fixed before looking (their mean, their maximum), on the development rows and on all rows.
Nothing here is tuned on held-out rows. Result (2026-12-07) in docs/guards.md: not shipped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import train_injection as trained  # noqa: E402

from shipyard.guard.injection.evaluate import tpr_at_fpr  # noqa: E402
from shipyard.guard.injection.features import features  # noqa: E402
from shipyard.guard.injection.normalize import normalize  # noqa: E402
from shipyard.models.wordllama import _load  # noqa: E402


def main() -> None:
    rows = trained.load_rows(trained._default_data())
    texts = [r["text"] for r in rows]
    labels = np.array([r["label"] == "attack" for r in rows])
    groups = [r["group"] for r in rows]
    clean = [normalize(t) for t in texts]
    started = time.process_time()
    embedded = np.asarray(_load(256).embed(clean), dtype=float)
    print(f"embedding: {(time.process_time() - started) / len(texts) * 1e3:.2f} ms per text")
    feats = [features(c) for c in clean]
    shipped, embeddings = np.zeros(len(rows)), np.zeros(len(rows))
    for train, test in GroupKFold(n_splits=5).split(texts, labels, groups):
        model = trained.fit([feats[i] for i in train], [bool(labels[i]) for i in train])
        shipped[test] = [model.score(texts[i]) for i in test]
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=0)
        clf.fit(embedded[train], labels[train])
        embeddings[test] = clf.predict_proba(embedded[test])[:, 1]
    added = ("handwritten", "docs", "readme")
    dev = [i for i, r in enumerate(rows) if r["source_pkg"] not in added]
    for name, scores in (
        ("shipped model", shipped),
        ("embeddings alone", embeddings),
        ("mean of both", (shipped + embeddings) / 2),
        ("max of both", np.maximum(shipped, embeddings)),
    ):
        on_dev = tpr_at_fpr([bool(labels[i]) for i in dev], [float(scores[i]) for i in dev], 0.01)
        on_all = tpr_at_fpr([bool(y) for y in labels], [float(s) for s in scores], 0.01)
        print(f"{name:17s} TPR at 1% FPR: development rows {on_dev:.3f}, all rows {on_all:.3f}")


if __name__ == "__main__":
    main()
