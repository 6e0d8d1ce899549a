"""Temperature scaling (Guo et al. 2017): one number per classification task that makes confidence a probability.

Training fits ``T`` on the held-out split by minimising the negative
log-likelihood of ``softmax(logits / T)``; the predictors divide logits by it
(``core.predictor``), so argmax, and so the label, never changes. The figures
here (ECE, reliability bins) are numpy only; scipy is imported where the fit
needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Bounds of the fit: beyond them a temperature says more about a tiny split than about the model.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
ECE_BINS = 10


def softmax_rows(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, gold: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(gold)), np.asarray(gold, dtype=np.int64)].mean())


def fit_temperature(logits: np.ndarray, gold: Sequence[int]) -> float:
    """The temperature that minimises NLL on ``(logits, gold)``, within [0.05, 20].

    With no error on the split there is no evidence of how often the model
    is wrong, and NLL keeps falling as T -> 0; the fit then only softens
    (T >= 1), never sharpens.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    if len(gold) == 0:
        return 1.0
    no_errors = bool((logits.argmax(-1) == gold).all())
    low = 1.0 if no_errors else MIN_TEMPERATURE
    result = minimize_scalar(lambda log_t: nll(logits, gold, float(np.exp(log_t))),
                             bounds=(np.log(low), np.log(MAX_TEMPERATURE)), method="bounded",
                             options={"xatol": 1e-4})
    t = float(np.exp(result.x))
    # The bounded search never tries the bounds themselves; keep T = 1 unless the fit is better.
    return round(t, 4) if nll(logits, gold, t) < nll(logits, gold, 1.0) else 1.0


def _binned(probs: np.ndarray, gold: Sequence[int], n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's top-label confidence, whether that label is right, and its bin of ``n_bins`` equal-width ones."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == np.asarray(gold, dtype=np.int64)
    # A confidence of exactly 1.0 belongs to the last bin.
    return conf, correct, np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(probs: np.ndarray, gold: Sequence[int], n_bins: int = ECE_BINS) -> list[dict]:
    """Top-label confidence in ``n_bins`` equal-width bins: range, count, mean confidence, accuracy."""
    conf, correct, which = _binned(probs, gold, n_bins)
    out = []
    for b in range(n_bins):
        mask = which == b
        n = int(mask.sum())
        out.append({"low": round(b / n_bins, 4), "high": round((b + 1) / n_bins, 4), "n": n,
                    "confidence": round(float(conf[mask].mean()), 4) if n else None,
                    "accuracy": round(float(correct[mask].mean()), 4) if n else None})
    return out


def expected_calibration_error(probs: np.ndarray, gold: Sequence[int], n_bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(probs) == 0:
        return 0.0
    conf, correct, which = _binned(probs, gold, n_bins)
    total = 0.0
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total / len(probs))


def calibration_report(logits: np.ndarray, gold: Sequence[int], temperature: float) -> dict:
    """ECE, NLL and reliability bins of ``logits`` before (T = 1) and after ``temperature``."""
    before, after = softmax_rows(logits), softmax_rows(logits, temperature)
    return {
        "temperature": float(temperature),
        "ece_before": round(expected_calibration_error(before, gold), 4),
        "ece_after": round(expected_calibration_error(after, gold), 4),
        "nll_before": round(nll(logits, gold), 4),
        "nll_after": round(nll(logits, gold, temperature), 4),
        "n": len(gold),
        "bins_before": reliability_bins(before, gold),
        "bins_after": reliability_bins(after, gold),
    }


def calibrate(logits: np.ndarray, gold: Sequence[int], split: str) -> dict:
    """Fit a temperature and describe it for the adapter's ``task.json`` (``"calibration"``)."""
    t = fit_temperature(logits, gold)
    report = calibration_report(logits, gold, t)
    return {"method": "temperature", "temperature": t, "fitted_on": split, "n": report["n"],
            **{k: report[k] for k in ("ece_before", "ece_after", "nll_before", "nll_after")}}


def cross_fitted_ece(logits: np.ndarray, gold: Sequence[int], folds: int = 5, seed: int = 0) -> float:
    """ECE with each example scaled by a temperature fitted on the other folds: an honest "after" figure
    when the temperature was fitted on these same examples."""
    logits = np.asarray(logits, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(gold))
    probs = np.zeros_like(logits)
    for k in range(folds):
        held = order[k::folds]
        rest = np.setdiff1d(order, held)
        if len(held) == 0:
            continue
        probs[held] = softmax_rows(logits[held], fit_temperature(logits[rest], gold[rest]) if len(rest) else 1.0)
    return round(expected_calibration_error(probs, gold), 4)
