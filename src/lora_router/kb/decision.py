"""The no-answer decision as a small logistic regression over features of the ranking.

A single threshold on the top candidate's confidence holds on the phrasings it
was tuned on and little further: an off-topic question can share a few common
n-grams with one entry and score as high as a reworded in-KB one. The model
looks at the ranking from several sides at once (``FEATURES``):

* ``confidence``  the top candidate's confidence (relevance**w * retrieval**(1-w))
* ``relevance``   sigmoid of the cross-encoder's logit for the top candidate
* ``retrieval``   the top candidate's TF-IDF cosine
* ``gap``         the top confidence minus the second one (0 with one candidate)
* ``coverage``    the share of the question's distinct n-grams that the top entry holds
                  (in the phrasings it was scored by, or its answer)
* ``unknown``     the share of the question's distinct n-grams that no phrasing or answer
                  of the knowledge base holds
* ``no_answer_similarity``  the cosine of the question to the closest training question without
                  an answer (``kb/examples.py``); decisions fitted before it lack it and never read it
* ``residual_answerable``  a small model's P(answered) from the question's n-grams that the top entry
                  holds nowhere (``kb/residual.py``); decisions fitted before it lack it and never read it

Training fits it (``fit_decision``: standardised features, L2 penalty,
Newton's method in numpy) and saves the plain weights in
``AnswerSettings.decision``, with the examples ``no_answer_similarity`` compares
with (``no_answer_examples``); answering needs numpy only, so the ONNX runtime
decides exactly as PyTorch does. A decision is read by the names it lists in
``features``, so one saved with fewer features decides as it did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FEATURES = ("confidence", "relevance", "retrieval", "gap", "coverage", "unknown")
# Read only by a decision fitted with examples of questions without an answer (kb/examples.py).
EXAMPLE_FEATURES = ("no_answer_similarity",)
# Read only by a decision fitted with a model of the n-grams the top entry leaves over (kb/residual.py).
RESIDUAL_FEATURES = ("residual_answerable",)

# The L2 penalty on the standardised weights: strong enough that a feature
# separating the training split by chance cannot dominate (a few hundred questions).
L2_PENALTY = 1.0
MIN_SCALE = 0.05
# How far the fit leans from "each question weighs the same" (0) to "each kind weighs half" (1). The
# bundled train split holds a third of questions without an answer, the questions the decision meets may
# hold more: chosen by the 5-fold CV of train (docs/performance.md), the best of 0, 0.25, ... 1 at
# no-answer precision and recall together.
NO_ANSWER_BALANCE = 0.25


def decision_features(ranked: Sequence[dict], coverage: float, unknown: float) -> dict[str, float]:
    """The ``FEATURES`` of a ranking (dicts with ``exact`` confidence, ``relevance``, ``retrieval``, best first)."""
    if not ranked:
        return {"confidence": 0.0, "relevance": 0.0, "retrieval": 0.0, "gap": 0.0, "coverage": 0.0,
                "unknown": unknown}
    top = ranked[0]
    second = ranked[1]["exact"] if len(ranked) > 1 else 0.0
    return {"confidence": float(top["exact"]), "relevance": float(top["relevance"]),
            "retrieval": float(top["retrieval"]), "gap": float(top["exact"] - second),
            "coverage": float(coverage), "unknown": float(unknown)}


def answer_probability(decision: dict, features: dict[str, float]) -> float:
    """P(an entry answers the question) under a saved ``decision`` (``fit_decision``'s result)."""
    x = np.array([features[name] for name in decision["features"]], dtype=np.float64)
    z = (x - np.asarray(decision["mean"])) / np.asarray(decision["scale"])
    return 1.0 / (1.0 + math.exp(-float(decision["intercept"] + z @ np.asarray(decision["coef"]))))


def fit_decision(features: Sequence[dict[str, float]], no_answer: Sequence[bool],
                 l2: float = L2_PENALTY, balance: float | None = None,
                 no_answer_examples: Sequence[str] | None = None, residual_model: dict | None = None) -> dict | None:
    """A logistic regression of "an entry answers it" on ``FEATURES``; None when one kind is missing.

    With ``no_answer_examples`` (the questions without an answer it is fitted
    on) it also reads ``no_answer_similarity``, which every row of ``features``
    must then hold, and saves the examples with the weights; with ``residual_model``
    (``kb/residual.py``) it reads ``residual_answerable`` the same way.

    ``balance`` (default ``NO_ANSWER_BALANCE``) weighs the questions: 0, each
    the same, so the cut-off 0.5 keeps the training split's share of questions
    without an answer; 1, each kind half the loss (the balanced accuracy the
    threshold fit maximises); between, a mix of the two. Before the examples,
    full balance raised CV no-answer recall (0.67 to 0.81) but cost more in
    precision (0.79 to 0.59); with them and the richer knowledge base a
    quarter of it raised recall at the same precision (docs/performance.md).
    """
    y = 1.0 - np.asarray(no_answer, dtype=np.float64)
    if len(features) != y.size:
        raise ValueError(f"{len(features)} feature rows for {y.size} no-answer flags")
    if y.all() or not y.any():
        return None
    names = [*FEATURES, *(EXAMPLE_FEATURES if no_answer_examples is not None else ()),
             *(RESIDUAL_FEATURES if residual_model is not None else ())]
    x = np.array([[f[name] for name in names] for f in features], dtype=np.float64)
    # Every feature lies in [0, 1]; one that barely moves on the training split (the cross-encoder's
    # relevance on a random base) is not read finer than MIN_SCALE, or logits that differ by rounding
    # (ONNX against PyTorch) would move the probability, and new phrasings would sway it.
    mean, scale = x.mean(0), np.maximum(x.std(0), MIN_SCALE)
    z = np.c_[np.ones(len(x)), (x - mean) / scale]
    balance = NO_ANSWER_BALANCE if balance is None else float(balance)
    w_sample = (1.0 - balance) / len(y) + balance * np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum())
    penalty = np.r_[0.0, np.full(len(names), l2 / len(x))]  # the intercept is not penalised
    beta = newton_logistic(z, y, w_sample, penalty)
    decision = {"kind": "logistic", "features": names, "mean": _rounded(mean), "scale": _rounded(scale),
                "intercept": round(float(beta[0]), 8), "coef": _rounded(beta[1:]), "cutoff": 0.5}
    if no_answer_examples is not None:
        decision["no_answer_examples"] = list(no_answer_examples)
    if residual_model is not None:
        decision["residual_model"] = residual_model
    return decision


def newton_logistic(z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, penalty: np.ndarray,
                    iterations: int = 100, tol: float = 1e-10, ridge: float = 1e-12) -> np.ndarray:
    """The weights of a weighted, L2-penalised logistic regression of ``y`` on ``z`` (Newton's method).

    ``penalty[j]`` is the L2 penalty of weight j (0 for an intercept column);
    ``ridge`` keeps the Hessian invertible. With more columns than rows (the
    residual model's n-grams: a few thousand against a few hundred questions)
    each step is solved in the rows' dimension (``_wide_step``), the same
    step at a fraction of the cost.
    """
    free = penalty <= 0
    wide = z.shape[1] > z.shape[0] and 0 < free.sum() < z.shape[0]
    gram = None
    if wide:  # the penalised columns' Gram matrix, scaled by their penalties: fixed across the steps
        x = z[:, ~free]
        gram = (x / (penalty[~free] + ridge)) @ x.T
    beta = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        grad = z.T @ (sample_weight * (p - y)) + penalty * beta
        s = sample_weight * p * (1 - p)
        if gram is not None:
            step = _wide_step(z, s, penalty + ridge, free, gram, grad)
        else:
            hess = (z * s[:, None]).T @ z + np.diag(penalty + ridge)
            step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < tol:
            break
    return beta


def _wide_step(z: np.ndarray, s: np.ndarray, diag: np.ndarray, free: np.ndarray, gram: np.ndarray,
               grad: np.ndarray) -> np.ndarray:
    """Solve (Z' S Z + D) step = grad when Z has more columns than rows.

    The penalised columns X (D's entries there > 0) take the Woodbury identity:
    (X' S X + D)^-1 v = D^-1 v - D^-1 X' R (I + R X D^-1 X' R)^-1 R X D^-1 v
    with R = S^1/2, an n x n system (``gram`` = X D^-1 X'). The few unpenalised
    columns U (the intercept) are then eliminated by their Schur complement.
    """
    x, u = z[:, ~free], z[:, free]
    dx = diag[~free]
    r = np.sqrt(s)
    chol = np.linalg.cholesky(np.eye(len(s)) + r[:, None] * gram * r[None, :])

    def solve_x(v: np.ndarray) -> np.ndarray:  # (X' S X + D_x)^-1 v, v of shape (p,) or (p, k)
        dv = v / dx[:, None] if v.ndim == 2 else v / dx
        inner = x @ dv
        inner = (r[:, None] if v.ndim == 2 else r) * inner
        t = np.linalg.solve(chol.T, np.linalg.solve(chol, inner))
        t = (r[:, None] if v.ndim == 2 else r) * t
        back = x.T @ t
        return dv - (back / dx[:, None] if v.ndim == 2 else back / dx)

    cross = x.T @ (s[:, None] * u)  # X' S U
    corner = u.T @ (s[:, None] * u) + np.diag(diag[free])  # U' S U + D_u
    g_x, g_u = grad[~free], grad[free]
    m_cross, m_gx = solve_x(cross), solve_x(g_x)
    step_u = np.linalg.solve(corner - cross.T @ m_cross, g_u - cross.T @ m_gx)
    step = np.empty_like(grad)
    step[free] = step_u
    step[~free] = m_gx - m_cross @ step_u
    return step


def _rounded(a: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in a]
