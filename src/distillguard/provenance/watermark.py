"""Keyed green-list watermark (Kirchenbauer et al., 2023) and its radioactivity test (Sander et al., 2024).

**Green lists.** For each context (the previous token) a keyed pseudo-random share ``gamma`` of
the vocabulary is *green*; while decoding for a marked account, :class:`WatermarkLogitsProcessor`
adds ``delta`` to the green tokens' logits, so the text holds more green tokens than chance. A
pair (previous token, token) is green when a keyed 64-bit mix of the two tokens' hashes falls
below ``gamma``: green lists need no storage, are the same for any vocabulary that spells a token
the same way, and are computed for a whole batch x vocabulary at once (numpy).

Tokens are identified by the 64-bit xxHash of their text (:func:`token_hashes`), so a text can be
scored without the model's tokenizer when both sides use the same one: :func:`tokenize` (words and
punctuation) here; with a Hugging Face model, pass its vocabulary's strings to the processor and
score its token ids the same way.

**The test** (Sander et al., "Watermarking makes language models radioactive", NeurIPS 2024).
Under H0 (the text does not descend from watermarked text) each *distinct* (context, token) pair
is green with probability ``gamma``, independently of the others, because the green lists are a
keyed hash the text cannot know. Repeated pairs are not independent (a model repeats itself), so
they are scored once: the number of green pairs among the ``n`` distinct ones is then
Binomial(n, gamma), and the p-value is exact (``scipy.stats.binom.sf``). Without de-duplication
the test over-rejects (docs/provenance.md shows it). *Reading mode*, where the suspect's logits are
available: feed it watermarked text and score its own top-1 prediction at each position
(:func:`score_pairs` of (context token, predicted token)); this sees the model's learned bias directly instead of through sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import polars as pl
import xxhash
from scipy.stats import binom

from .keys import derive

TOKEN_PATTERN = r"\w+|[^\w\s]"
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def tokenize_many(texts: Sequence[str]) -> pl.Series:
    """Each text's tokens (a list column): words and single punctuation marks, lower-cased, the
    unit the text-side watermark scores. One native regex pass over all texts (Polars)."""
    return pl.Series("t", list(texts), dtype=pl.String).str.to_lowercase().str.extract_all(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """One text's tokens (see :func:`tokenize_many`)."""
    return tokenize_many([text])[0].to_list()


def token_hashes(tokens: Sequence[str] | np.ndarray) -> np.ndarray:
    """uint64 xxHash64 of each token (each distinct token hashed once)."""
    s = tokens if isinstance(tokens, pl.Series) else pl.Series("t", list(tokens), dtype=pl.String)
    if s.len() == 0:
        return np.zeros(0, dtype=np.uint64)
    uniq = s.unique().sort()  # each distinct token hashed once; dense ranks index the sorted distinct tokens
    h = np.fromiter((xxhash.xxh64_intdigest(t.encode("utf-8")) for t in uniq.to_list()), dtype=np.uint64, count=uniq.len())
    return h[s.rank("dense").to_numpy().astype(np.int64) - 1]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64 with full avalanche)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> _S30)) * _M2
        x = (x ^ (x >> _S27)) * _M3
        return x ^ (x >> _S31)


def _pair_key(prev: np.ndarray, tok: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix(prev * _M1 + _mix(tok))


class GreenList:
    """Which (previous token, token) pairs are green under a key.

    ``key``: the mark key's bytes (the seed is derived from it, never the key itself);
    ``gamma``: the green share of the vocabulary per context.
    """

    def __init__(self, key: bytes, gamma: float = 0.25, key_id: str = ""):
        if not 0 < gamma < 1:
            raise ValueError("gamma must be in (0, 1)")
        self.gamma, self.key_id = float(gamma), key_id
        self._seed = np.uint64(int.from_bytes(derive(key, "watermark-seed")[:8], "big"))
        self._cut = np.uint64(int(gamma * 2.0**53))

    def is_green(self, prev: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """Boolean array (broadcast of ``prev`` and ``tok``, both uint64 token hashes)."""
        prev = np.asarray(prev, dtype=np.uint64)
        tok = np.asarray(tok, dtype=np.uint64)
        with np.errstate(over="ignore"):
            x = _mix(self._seed ^ _mix(prev * _M1)) ^ tok
            return (_mix(x) >> _S11) < self._cut


class WatermarkLogitsProcessor:
    """A Hugging Face ``transformers`` ``LogitsProcessor`` (``__call__(input_ids, scores) -> scores``).

    ``vocab_hashes``: uint64 hash of each vocabulary entry's text (:func:`token_hashes` of the
    tokenizer's strings), so green lists follow token text; default: the token ids themselves.
    Works on numpy arrays and on torch tensors (torch is not imported unless given one). Rows of
    ``input_ids`` with no token yet are left as they are. Use it per request, for the accounts whose
    decision directs ``mark.watermark``; other requests decode without it.
    """

    def __init__(self, green: GreenList, delta: float = 2.0, vocab_hashes: np.ndarray | None = None):
        self.green, self.delta = green, float(delta)
        self.vocab_hashes = None if vocab_hashes is None else np.asarray(vocab_hashes, dtype=np.uint64)

    def mask(self, last_ids: np.ndarray, vocab_size: int) -> np.ndarray:
        """(batch, vocab) green mask for the given last token of each row."""
        vh = self.vocab_hashes if self.vocab_hashes is not None else np.arange(vocab_size, dtype=np.uint64)
        if len(vh) < vocab_size:  # a model's logits may be padded past its tokenizer's vocabulary
            vh = np.concatenate([vh, np.arange(len(vh), vocab_size, dtype=np.uint64) | np.uint64(1 << 63)])
        vh = vh[:vocab_size]
        last = np.asarray(last_ids).astype(np.int64)
        return self.green.is_green(vh[last][:, None], vh[None, :])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[-1] == 0:
            return scores
        if hasattr(scores, "detach"):  # torch
            import torch

            m = self.mask(input_ids[:, -1].detach().cpu().numpy(), scores.shape[-1])
            return scores + self.delta * torch.from_numpy(m).to(device=scores.device, dtype=scores.dtype)
        m = self.mask(np.asarray(input_ids)[:, -1], scores.shape[-1])
        return np.asarray(scores) + self.delta * m


@dataclass
class WatermarkTest:
    """The outcome of one test: ``green`` of ``scored`` distinct pairs (``tokens`` read in all)."""

    tokens: int
    scored: int
    green: int
    gamma: float
    p_value: float

    @property
    def green_share(self) -> float:
        return self.green / self.scored if self.scored else float("nan")

    @property
    def log10_p(self) -> float:
        """log10 of the p-value, finite where the p-value itself underflows to 0."""
        if self.scored <= 0:
            return 0.0
        lp = float(binom.logsf(self.green - 1, self.scored, self.gamma))
        if np.isfinite(lp):
            return lp / np.log(10)
        # Beyond double precision: the Chernoff bound n·KL(k/n || gamma), itself an upper bound on p.
        q, g = self.green / self.scored, self.gamma
        kl = q * np.log(q / g) + (1 - q) * np.log((1 - q) / (1 - g)) if q < 1 else np.log(1 / g)
        return float(-self.scored * kl / np.log(10))

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "scored": self.scored, "green": self.green, "gamma": self.gamma,
                "green_share": round(self.green_share, 6) if self.scored else None, "p_value": self.p_value,
                "log10_p": round(self.log10_p, 3)}


def binomial_p(green: int, n: int, gamma: float) -> float:
    """Exact one-sided p-value P(X >= green), X ~ Binomial(n, gamma)."""
    if n <= 0:
        return 1.0
    return float(binom.sf(green - 1, n, gamma))


def score_pairs(prev: np.ndarray, tok: np.ndarray, green: GreenList, *, dedup: bool = True,
               exclude: np.ndarray | None = None) -> WatermarkTest:
    """Score (context, token) pairs given as uint64 hash arrays.

    ``dedup``: score each distinct pair once (the test's exactness needs it); ``exclude``: an
    ``(m, 2)`` array of pairs not to score (e.g. those of the probing prompts themselves, which
    the suspect copies rather than generates)."""
    prev = np.asarray(prev, dtype=np.uint64)
    tok = np.asarray(tok, dtype=np.uint64)
    n_tok = len(tok)
    if dedup and n_tok:
        # One 64-bit key per pair (a collision of two distinct pairs has probability ~n^2 / 2^65).
        _, first = np.unique(_pair_key(prev, tok), return_index=True)
        prev, tok = prev[first], tok[first]
    if exclude is not None and len(exclude) and len(prev):
        ex = np.asarray(exclude, dtype=np.uint64)
        keep = ~np.isin(_pair_key(prev, tok), _pair_key(ex[:, 0], ex[:, 1]))
        prev, tok = prev[keep], tok[keep]
    pairs = np.stack([prev, tok], axis=1)
    g = int(green.is_green(pairs[:, 0], pairs[:, 1]).sum()) if len(pairs) else 0
    return WatermarkTest(n_tok, len(pairs), g, green.gamma, binomial_p(g, len(pairs), green.gamma))


def text_pairs(texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(context, token) hash pairs of the texts' consecutive tokens (no pair spans two texts)."""
    lists = tokenize_many(list(texts))
    lens = lists.list.len().fill_null(0).to_numpy()
    flat = lists.explode().drop_nulls()
    if flat.len() < 2:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
    h = token_hashes(flat)
    ok = np.ones(len(h) - 1, dtype=bool)  # pair i = (token i, token i+1)
    ends = np.cumsum(lens[lens > 0])[:-1]  # a text's last token does not precede the next text's first
    ok[ends - 1] = False
    return h[:-1][ok], h[1:][ok]


def score_texts(texts: Iterable[str], green: GreenList, *, dedup: bool = True, exclude_texts: Iterable[str] = ()) -> WatermarkTest:
    """The radioactivity test on texts a suspect generated (API mode)."""
    prev, tok = text_pairs(texts)
    ex_p, ex_t = text_pairs(exclude_texts)
    exclude = np.stack([ex_p, ex_t], axis=1) if len(ex_p) else None
    return score_pairs(prev, tok, green, dedup=dedup, exclude=exclude)
