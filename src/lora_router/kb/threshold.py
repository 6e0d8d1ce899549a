"""The no-answer threshold, fitted on questions whose answers are known.

A question is answered when its best candidate's confidence reaches the
threshold. The fit picks the threshold that best tells the questions without
an answer from those with one, weighting both kinds equally (balanced
accuracy): a training split holds far fewer of the first, and a threshold
that maximised plain accuracy would answer nearly everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fit_threshold(confidences: Sequence[float], no_answer: Sequence[bool]) -> dict | None:
    """``{"threshold", "balanced_accuracy", "no_answer_recall", "answered", "n_no_answer", "n_answerable"}``.

    None when the questions are all of one kind (nothing to separate). The
    threshold sits midway between the lowest confidence answered and the
    highest one below it, so a re-run that moves a score by rounding keeps the decision.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    none = np.asarray(no_answer, dtype=bool)
    if conf.shape != none.shape:
        raise ValueError(f"{conf.size} confidences for {none.size} no-answer flags")
    if none.all() or not none.any():
        return None
    best_t, best_ba = 0.0, -1.0
    for t in np.unique(np.r_[conf, np.inf]):
        abstain = conf < t
        ba = (abstain[none].mean() + (~abstain[~none]).mean()) / 2
        if ba > best_ba + 1e-12:
            best_t, best_ba = float(t), float(ba)
    below = conf[conf < best_t]
    threshold = (best_t + float(below.max())) / 2 if below.size and np.isfinite(best_t) else best_t
    threshold = float(min(max(threshold, 0.0), 1.0))
    abstain = conf < threshold
    return {
        "threshold": round(threshold, 6),
        "balanced_accuracy": round(best_ba, 4),
        "no_answer_recall": round(float(abstain[none].mean()), 4),
        "answered": round(float((~abstain[~none]).mean()), 4),
        "n_no_answer": int(none.sum()),
        "n_answerable": int((~none).sum()),
    }
