"""Real serving traces turned into samplers for timing and token counts.

What each trace contributes:

* **ServeGen** (Alibaba Bailian, per API client, 600-s windows over 14 days): rate curves
  and inter-arrival burstiness (coefficient of variation) of real heavy customers, used for
  app backends, routers and the harvesters that imitate them; per-client token PDFs.
* **RAGPulse** (university RAG service, one week): session sizes, think-time gaps between
  a user's requests, and the hour-of-day profile of human use.
* **Azure 2023 conv / code** (one hour each): joint (context, generated) token pairs for
  chat and code-completion requests, and real aggregate inter-arrival gaps.
* **Mooncake conversation** (Kimi, one hour): long-context (input, output) pairs.
* **oasst2**: prompts per user, a real heavy-tailed activity distribution.

Everything is loaded once per data directory and cached; samplers only read.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from distillguard.sim.corpora import corpus_file, oasst2_user_counts, read_json, read_jsonl

WINDOW_S = 600  # ServeGen window length
SERVEGEN_TZ_H = 8  # Bailian serves mainland China: window 0 is taken as local midnight (UTC+8)


class Empirical:
    """Uniform resampling of observed values (the empirical distribution)."""

    __slots__ = ("values",)

    def __init__(self, values: list):
        self.values = values

    def draw(self, rng: random.Random):
        return self.values[int(rng.random() * len(self.values))]

    def __len__(self) -> int:
        return len(self.values)


class DiscretePdf:
    """Sampler for a ``{value: probability}`` table."""

    __slots__ = ("values", "cum")

    def __init__(self, table: dict[int, float]):
        items = sorted((int(k), float(v)) for k, v in table.items() if v > 0)
        self.values = [k for k, _ in items]
        total, cum = 0.0, []
        for _, p in items:
            total += p
            cum.append(total)
        self.cum = [c / total for c in cum] if total > 0 else [1.0]
        if not self.values:
            self.values = [1]

    def draw(self, rng: random.Random) -> int:
        i = bisect.bisect_left(self.cum, rng.random())
        return self.values[min(i, len(self.values) - 1)]


@dataclass
class RateProfile:
    """One real API client's request-rate curve.

    Attributes
    ----------
    name : str
        ``"<model>/<client_id>"``.
    rel_rate : numpy.ndarray
        Rate per 600-s window divided by the client's mean rate (mean 1).
    cv : numpy.ndarray
        Inter-arrival coefficient of variation per window (0 where unknown).
    busy : float
        Fraction of windows with any traffic.
    day_night : float
        Mean rate in the busiest 8 local hours over the quietest 8 (1 = flat, 24/7).
    """

    name: str
    rel_rate: list[float]
    cv: list[float]
    busy: float
    day_night: float

    def rate_at(self, t_s: float, offset_s: float) -> tuple[float, float]:
        """Relative rate and CV of the window covering simulation second ``t_s``."""
        w = int((t_s + offset_s) // WINDOW_S) % len(self.rel_rate)
        return self.rel_rate[w], self.cv[w]


@dataclass
class Traces:
    """Samplers built from the real traces (see module docstring)."""

    chat_tokens: Empirical  # (context, generated) Azure conv
    code_tokens: Empirical  # (context, generated) Azure code
    long_tokens: Empirical  # (input, output) Mooncake conversation
    rag_tokens: Empirical  # (input, output) RAGPulse
    service_gaps_s: Empirical  # Azure conv aggregate inter-arrival gaps
    session_sizes: Empirical  # RAGPulse requests per session
    think_gaps_s: Empirical  # RAGPulse gaps inside a session
    hour_weights: list[float]  # 24 local-hour weights of human use (RAGPulse)
    user_activity: Empirical  # oasst2 prompts per user
    rate_profiles: list[RateProfile] = field(default_factory=list)
    token_pdfs: list[tuple[str, DiscretePdf, DiscretePdf]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def profiles(self, *, min_busy: float = 0.0, max_day_night: float = 1e9, min_day_night: float = 0.0):
        """Rate profiles matching a shape; all of them if none match."""
        sel = [p for p in self.rate_profiles if p.busy >= min_busy and min_day_night <= p.day_night <= max_day_night]
        return sel or self.rate_profiles


# ---------------------------------------------------------------------------------------
# loaders


def _azure(path: Path) -> tuple[list[tuple[int, int]], list[float]]:
    if not path.exists():
        return [], []
    df = pl.read_csv(path, schema_overrides={"TIMESTAMP": pl.Utf8}, ignore_errors=True)
    df = df.drop_nulls(["ContextTokens", "GeneratedTokens"])
    pairs = [(int(a), int(b)) for a, b in zip(df["ContextTokens"], df["GeneratedTokens"]) if a > 0 and b > 0]
    ts = (
        df.select(pl.col("TIMESTAMP").str.slice(0, 23).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False))
        .to_series()
        .drop_nulls()
        .sort()
    )
    gaps = [g / 1e6 for g in ts.diff().dt.total_microseconds().drop_nulls().to_list() if g is not None and g >= 0]
    return pairs, gaps


def _mooncake(path: Path) -> list[tuple[int, int]]:
    out = []
    for r in read_jsonl(path):
        a, b = r.get("input_length"), r.get("output_length")
        if isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0:
            out.append((a, b))
    return out


def _ragpulse(path: Path):
    """Session sizes, intra-session gaps, token pairs and the local hour profile."""
    sessions: dict[str, list[float]] = {}
    tokens = []
    for r in read_jsonl(path):
        try:
            t = float(r.get("timestamp"))
        except (TypeError, ValueError):
            continue
        sid = r.get("session_id")
        if not isinstance(sid, str):
            continue
        sessions.setdefault(sid, []).append(t)
        a, b = r.get("input_length"), r.get("output_length")
        if isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0:
            tokens.append((a, b))
    sizes, gaps, offsets = [], [], []
    for sid, ts in sessions.items():
        ts.sort()
        prefix = sid.split("-")[0]
        # Real sessions are "<epoch ms>-<random>"; anything else (a test client) is skipped.
        if not (prefix.isdigit() and len(prefix) == 13):
            continue
        sizes.append(len(ts))
        gaps.extend(b - a for a, b in zip(ts, ts[1:]) if 0 < b - a < 7200)
        offsets.append(int(prefix) / 1000 - ts[0])
    hours = [0.0] * 24
    if offsets:
        t0 = float(np.median(offsets))
        for ts in sessions.values():
            for t in ts:
                hours[int(((t0 + t) / 3600 + SERVEGEN_TZ_H) % 24)] += 1
    return sizes, gaps, tokens, hours


_SCHEMA = {
    "client_id": pl.Int64,
    "window_start_s": pl.Int64,
    "rate_rps": pl.Float64,
    "iat_cv": pl.Float64,
    "iat_dist": pl.Utf8,
    "iat_param1": pl.Float64,
    "iat_param2": pl.Float64,
}


def _servegen_rates(d: Path) -> list[RateProfile]:
    out = []
    for model in ("m-large", "m-mid", "m-small"):
        path = corpus_file(d, "alibaba_servegen", f"language_{model}_client_traces.csv.gz")
        if not path.exists():
            continue
        df = pl.read_csv(path, schema_overrides=_SCHEMA, ignore_errors=True).drop_nulls(
            ["client_id", "window_start_s", "rate_rps"]
        )
        for (cid,), g in df.sort(["client_id", "window_start_s"]).group_by(["client_id"], maintain_order=True):
            rate = g["rate_rps"].fill_null(0).to_numpy().astype(float)
            cv = g["iat_cv"].fill_null(0).to_numpy().astype(float)
            mean = rate.mean()
            busy = float((rate > 0).mean())
            if mean <= 0 or busy < 0.2 or len(rate) < 144:
                continue
            days = len(rate) // 144
            prof = rate[: days * 144].reshape(days, 144).mean(axis=0)
            hourly = prof.reshape(24, 6).mean(axis=1)
            srt = np.sort(hourly)
            day_night = float(srt[-8:].mean() / max(srt[:8].mean(), 1e-9 * mean + 1e-12))
            # Plain lists: indexed once per 600-s window per account, where numpy scalars are slow.
            out.append(RateProfile(f"{model}/{cid}", (rate / mean).tolist(), cv.tolist(), busy, min(day_night, 1e6)))
    return out


_PDF_ENTRY = re.compile(r"(\d+)\s*:\s*([0-9.eE+-]+)")


def _servegen_token_pdfs(d: Path, max_windows: int = 4):
    """Per-client (input, output) token PDFs, each merged over a few 6-hour windows.

    Only the m-small model's file is read: its 38 clients give enough distinct shapes, and
    the larger files would add seconds to every run for no new behaviour.
    """
    out = []
    for model in ("m-small",):
        doc = read_json(corpus_file(d, "alibaba_servegen", f"language_{model}_client_datasets.json.gz"))
        if not isinstance(doc, dict):
            continue
        for cid in sorted(doc, key=lambda k: (len(k), k)):
            windows = doc[cid] if isinstance(doc[cid], dict) else {}
            keys = [
                k
                for k in sorted(windows, key=lambda k: (len(k), k))
                if windows[k].get("input_tokens") not in (None, "{}")
            ]
            if not keys:
                continue
            step = max(1, len(keys) // max_windows)
            ins: dict[int, float] = {}
            outs: dict[int, float] = {}
            for k in keys[::step][:max_windows]:
                for src, acc in ((windows[k].get("input_tokens"), ins), (windows[k].get("output_tokens"), outs)):
                    for v, p in _PDF_ENTRY.findall(src or ""):
                        acc[int(v)] = acc.get(int(v), 0.0) + float(p)
            if ins and outs:
                out.append((f"{model}/{cid}", DiscretePdf(ins), DiscretePdf(outs)))
    return out


# Fallbacks used only if a trace file is missing altogether; documented in docs/benchmark.md.
_DEFAULT_HOURS = [3, 1.5, 1, 0.7, 0.6, 0.8, 1.5, 3, 5, 6.5, 7, 7, 6.5, 7, 7, 7, 6.5, 6, 6, 6.5, 6.5, 6, 5.5, 4.5]


@lru_cache(maxsize=4)
def load_traces(data_dir: Path) -> Traces:
    """Build every trace sampler from ``data_dir`` (``shared/data`` or the bundle)."""
    d = Path(data_dir)
    rng = random.Random(1)
    sources = []
    conv_pairs, conv_gaps = _azure(corpus_file(d, "azure_public_dataset", "AzureLLMInferenceTrace_conv.csv.gz"))
    code_pairs, _ = _azure(corpus_file(d, "azure_public_dataset", "AzureLLMInferenceTrace_code.csv.gz"))
    if conv_pairs:
        sources.append("azure_conv")
    if code_pairs:
        sources.append("azure_code")
    long_pairs = _mooncake(corpus_file(d, "mooncake", "conversation_trace.jsonl.gz"))
    if long_pairs:
        sources.append("mooncake")
    sizes, gaps, rag_pairs, hours = _ragpulse(corpus_file(d, "ragpulse", "0_trace.jsonl.gz"))
    if sizes:
        sources.append("ragpulse")
    counts = oasst2_user_counts(d)
    if counts:
        sources.append("oasst2_users")
    else:
        # Without oasst2: a geometric-like tail with the same shape (75 % one-off users).
        counts = [1] * 75 + [2] * 15 + [3] * 5 + [5] * 3 + [9] * 2
    rates = _servegen_rates(d)
    pdfs = _servegen_token_pdfs(d)
    if rates:
        sources.append("servegen_rates")
    if pdfs:
        sources.append("servegen_tokens")

    def lognormal_pairs(mu_in, mu_out, n=2000):
        return [(int(math.exp(rng.gauss(mu_in, 0.8))) + 1, int(math.exp(rng.gauss(mu_out, 0.8))) + 1) for _ in range(n)]

    if not rates:
        # Flat-ish synthetic profile so the simulator still runs; never used with real data.
        t = np.arange(2016)
        rel = 1 + 0.5 * np.sin(2 * np.pi * (t % 144) / 144)
        rates = [RateProfile("synthetic/0", (rel / rel.mean()).tolist(), [1.0] * 2016, 1.0, 3.0)]
    return Traces(
        chat_tokens=Empirical(conv_pairs or lognormal_pairs(6.5, 5.0)),
        code_tokens=Empirical(code_pairs or lognormal_pairs(7.2, 2.8)),
        long_tokens=Empirical(long_pairs or lognormal_pairs(8.8, 5.6)),
        rag_tokens=Empirical(rag_pairs or lognormal_pairs(8.0, 5.4)),
        service_gaps_s=Empirical(conv_gaps or [rng.expovariate(5.0) for _ in range(2000)]),
        session_sizes=Empirical(sizes or [1, 1, 1, 2, 2, 3, 4]),
        think_gaps_s=Empirical(gaps or [rng.lognormvariate(3.5, 1.2) for _ in range(2000)]),
        hour_weights=hours if sum(hours) > 0 else list(_DEFAULT_HOURS),
        user_activity=Empirical(counts),
        rate_profiles=rates,
        token_pdfs=pdfs,
        sources=sources,
    )
