"""The learned layer: a calibrated logistic model over scale-free behavioural features.

Why logistic regression: its probability is calibrated by construction (checked with a
reliability table in ``distillguard tune``), each feature's contribution (coefficient x value) is
a reason an analyst can read, and sign constraints keep it from learning a simulator's accident
("more reasoning elicitation means *less* risk"). Coefficients are data (``models/*.json``),
refitted from labels by ``fit``; the scikit-learn estimator is rebuilt from them on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ..features.account import FEATURES
from ..paths import MODELS_DIR

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

DEFAULT_MODEL = MODELS_DIR / "account_lr.json"

# Direction each feature may push the score (+1 up, -1 down, 0 either; None = not in the model).
# Features whose meaning is "what harvesting is" are constrained; a fit that wants the other sign
# gets zero instead. Left out: quantities that describe *how much* or *when* rather than *what*
# (output length, rate, hours of day, duty cycle, regularity). They differ between any simulator
# and real traffic far more than intent does, so a model leaning on them learns the simulator;
# rules and analysts still see them. The language spread (how many scripts so far) is left out
# for the same reason: it grows with a router's user base and with the length of the log (the
# multilingual rule, dg-005, reads it together with what is asked).
SIGNS = {
    "log_n": None, "novelty": 1, "nd_share": -1, "tpl_share": None, "single_share": 1, "reason_share": 1,
    "maxout_share": 1, "rubric_share": 1, "exam_share": 1, "code_share": None, "shape_share": 1,
    "trunc_share": None, "log_out_tok": None, "hod_cover": None, "duty": None, "iat_cv": None, "log_rate": None,
    "young": 1, "lang_spread": None, "tools_share": -1, "extract_share": 1,
    "log_extract": 1, "global_novelty": None, "item_novelty": None, "text_share": None, "fmt_share": -1, "trace_share": 1,
    "log_trace": None, "log_gap": None,
    # Session-level agent evidence is left to the reviewed rule (dg-011): too few agent
    # harvesters in any training log to weigh it against real coding agents.
    "agent_fresh_share": None, "log_agent_fresh": None, "day_hours": None,
}


@dataclass
class AccountModel:
    """Logistic model over ``FEATURES`` (column prefix ``x_`` or ``w_x_``)."""

    coef: np.ndarray
    intercept: float
    features: tuple[str, ...] = tuple(FEATURES)
    meta: dict | None = None

    def estimator(self) -> "LogisticRegression":
        """A fitted scikit-learn estimator carrying these coefficients."""
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression()
        lr.classes_ = np.array([0, 1])
        lr.coef_ = self.coef.reshape(1, -1).astype(float)
        lr.intercept_ = np.array([self.intercept], dtype=float)
        lr.n_features_in_ = len(self.features)
        return lr

    def matrix(self, df: pl.DataFrame, prefix: str = "x_") -> np.ndarray:
        return df.select([pl.col(prefix + f) for f in self.features]).to_numpy().astype(np.float64)

    def predict_proba(self, df: pl.DataFrame, prefix: str = "x_") -> np.ndarray:
        """Probability of harvesting for each snapshot row.

        The same arithmetic as ``self.estimator().predict_proba(X)[:, 1]`` (a matrix product,
        then the logistic function), to within a few ulps (a test checks it; bit for bit up to
        scikit-learn 1.8), without importing
        scikit-learn: that import alone costs a scan or the service's start-up ~2-3 s.
        """
        if df.height == 0:
            return np.zeros(0)
        X = self.matrix(df, prefix)
        if not np.isfinite(X).all():
            raise ValueError("feature matrix holds NaN or infinity")
        z = (X @ self.coef.reshape(1, -1).astype(float).T + np.array([self.intercept], dtype=float)).reshape(-1)
        return 1.0 / (1.0 + np.exp(-z))

    def contributions(self, df: pl.DataFrame, prefix: str = "x_") -> np.ndarray:
        """Per-row, per-feature log-odds contributions (coef x value)."""
        return self.matrix(df, prefix) * self.coef.reshape(1, -1)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({
            "features": list(self.features), "coef": [float(c) for c in self.coef],
            "intercept": float(self.intercept), "meta": self.meta or {},
        }, indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path | None = None) -> "AccountModel":
        d = json.loads(Path(path or DEFAULT_MODEL).read_text())
        coef = dict(zip(d["features"], d["coef"]))
        # Features added since the file was written start neutral.
        return cls(np.array([coef.get(f, 0.0) for f in FEATURES]), float(d["intercept"]), tuple(FEATURES), d.get("meta"))


# Evidence shrinkage (``shrink_by_evidence``): the prior the score starts from before an
# account has sent anything, and how many exchanges' worth of weight that prior carries.
PRIOR_SCORE = 0.05
PRIOR_EXCHANGES = 3.0


def shrink_by_evidence(p: np.ndarray, events: np.ndarray, prior: float = PRIOR_SCORE, k: float = PRIOR_EXCHANGES) -> np.ndarray:
    """The model's probability, shrunk towards ``prior`` by how little evidence it rests on.

    The model reads shares and rates of an account's exchanges, and was fitted on accounts of a
    day's traffic with balanced class weights: given the *shape* of a stream it answers "which
    side", not "how sure, after n exchanges". One exchange that happens to be single-turn,
    step-by-step and exam-shaped has every share at its extreme and scored 0.9998. Here the
    log-odds move from the prior's towards the model's in proportion ``n / (n + k)`` (a
    pseudo-count: the prior weighs like ``k`` exchanges), so one exchange can say at most a
    quarter of what a day's stream says, and a hundred exchanges nearly all of it. Monotone in
    the model's probability for a fixed n, so rankings among equally observed accounts do not
    change; thresholds of the policy are on this scale.
    """
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    n = np.maximum(np.asarray(events, dtype=float), 0.0)
    w = n / (n + k)
    z0 = np.log(prior / (1 - prior))
    z = z0 + w * (np.log(p / (1 - p)) - z0)
    return 1.0 / (1.0 + np.exp(-z))


def fit(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, C: float = 0.05, meta: dict | None = None) -> AccountModel:
    """Fit the sign-constrained logistic model (L2 penalty on the raw, mostly [0, 1] features).

    Features whose fitted sign contradicts ``SIGNS`` are dropped (coefficient 0) and the model is
    refitted without them, so every remaining contribution reads in its natural direction.
    (Penalising in standard units was tried: it let rarely non-zero features such as the
    single-turn share take larger weights and raised false positives on held-out routers.)
    """
    from sklearn.linear_model import LogisticRegression

    allowed = np.array([SIGNS[f] is not None for f in FEATURES])
    coef = np.zeros(len(FEATURES))
    intercept = 0.0
    for _ in range(len(FEATURES)):
        lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
        lr.fit(X[:, allowed], y, sample_weight=sample_weight)
        coef = np.zeros(len(FEATURES))
        coef[allowed] = lr.coef_[0]
        intercept = float(lr.intercept_[0])
        bad = [i for i, f in enumerate(FEATURES) if allowed[i] and (SIGNS[f] or 0) * coef[i] < 0]
        if not bad:
            break
        allowed[bad] = False
    return AccountModel(coef, intercept, tuple(FEATURES), meta)
