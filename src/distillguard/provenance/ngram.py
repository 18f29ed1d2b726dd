"""A small word-level bigram language model, built from a config and trained in-process.

It stands in for the teacher (a provider's model that decodes with the watermark) and for the
students (models trained on harvested outputs) in the provenance experiment and tests: no
download, seconds to train on the shared corpora, and it exercises the real mechanisms — a
logits processor applied to next-token scores at decoding, a student that learns the token
statistics of what it was trained on, sampling through an OpenAI-compatible API.

Next-token probabilities are an interpolation of bigram and unigram relative frequencies; the
whole (vocab x vocab) table is held, so sampling a batch is one ``searchsorted`` per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import polars as pl

from .watermark import WatermarkLogitsProcessor, token_hashes, tokenize, tokenize_many


@dataclass
class BigramLM:
    vocab: np.ndarray        # object array of token strings
    logp: np.ndarray         # (V, V) float32: log P(next | prev)
    hashes: np.ndarray       # (V,) uint64 token hashes (the watermark's token identity)

    @classmethod
    def fit(cls, texts: Sequence[str], vocab_size: int = 2000, interpolation: float = 0.9) -> "BigramLM":
        """Count bigrams of the ``vocab_size`` most frequent tokens (pairs touching others are skipped)."""
        lists = tokenize_many(texts)
        flat = lists.explode().drop_nulls()
        if flat.len() == 0:
            raise ValueError("no tokens to fit on")
        vc = flat.value_counts(sort=True, name="n")
        vc = vc.sort(["n", "t"], descending=[True, False]).head(vocab_size)  # ties by text: reproducible
        vocab = vc["t"].to_numpy().astype(object)
        V = len(vocab)
        ids = flat.replace_strict(vc["t"], pl.int_range(V, eager=True), default=-1, return_dtype=pl.Int64).to_numpy()
        lens = lists.list.len().fill_null(0).to_numpy()
        last = np.cumsum(lens[lens > 0]) - 1  # no pair from one text's last token to the next text's first
        ok = (ids[:-1] >= 0) & (ids[1:] >= 0)
        ok[last[:-1][last[:-1] < len(ok)]] = False
        pair = ids[:-1][ok] * V + ids[1:][ok]
        big = np.bincount(pair, minlength=V * V).reshape(V, V).astype(np.float64)
        uni = np.bincount(ids[ids >= 0], minlength=V).astype(np.float64) + 1.0
        uni /= uni.sum()
        rows = big.sum(axis=1, keepdims=True)
        cond = np.divide(big, rows, out=np.tile(uni, (V, 1)), where=rows > 0)
        p = interpolation * cond + (1 - interpolation) * uni[None, :]
        return cls(vocab, np.log(p).astype(np.float32), token_hashes(vocab))

    @property
    def size(self) -> int:
        return len(self.vocab)

    def ids(self, tokens: Sequence[str] | pl.Series) -> np.ndarray:
        """Token ids (-1 for tokens outside the vocabulary)."""
        if not hasattr(self, "_vocab_s"):
            self._vocab_s = pl.Series("t", self.vocab.tolist(), dtype=pl.String)
        s = tokens if isinstance(tokens, pl.Series) else pl.Series("t", list(tokens), dtype=pl.String)
        return s.replace_strict(self._vocab_s, pl.int_range(self.size, eager=True), default=-1, return_dtype=pl.Int64).to_numpy()

    def start_ids(self, prompts: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """Each prompt's last in-vocabulary token (a unigram draw when it has none)."""
        if not hasattr(self, "_uni"):  # a fixed table of the model: built once, read on every request
            uni = np.exp(self.logp.astype(np.float64)).mean(axis=0)
            self._uni = uni / uni.sum()
        out = rng.choice(self.size, size=len(prompts), p=self._uni)
        toks = pl.DataFrame({"t": tokenize_many(prompts)}).with_row_index("row").explode("t").drop_nulls("t")
        if toks.height:
            ids = self.ids(toks["t"])
            rows = toks["row"].to_numpy().astype(np.int64)
            ok = ids >= 0
            r, i = rows[ok][::-1], ids[ok][::-1]
            last_rows, first = np.unique(r, return_index=True)  # first in reverse = each row's last known token
            out[last_rows] = i[first]
        return out

    def cdf(self, processor: WatermarkLogitsProcessor | None = None, temperature: float = 1.0) -> np.ndarray:
        """Flattened per-row CDFs offset by the row index (row r spans (r, r+1]): the sampler's table.

        With a processor, every context's scores go through it at once: the input ids are the
        ``V`` one-token contexts, the scores the (V, V) logits."""
        logits = self.logp.astype(np.float64) / temperature
        if processor is not None:
            logits = processor(np.arange(self.size)[:, None], logits)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        c = np.cumsum(p, axis=1)
        c /= c[:, -1:]
        c += np.arange(self.size)[:, None]
        c[:, -1] = np.arange(1, self.size + 1)
        return c.ravel()

    def generate(self, start: np.ndarray, n_tokens: int, rng: np.random.Generator, cdf: np.ndarray | None = None) -> np.ndarray:
        """(batch, n_tokens) ids sampled after the ``start`` ids (one per row)."""
        cdf = self.cdf() if cdf is None else cdf
        V = self.size
        out = np.empty((len(start), n_tokens), dtype=np.int64)
        cur = np.asarray(start, dtype=np.int64)
        for j in range(n_tokens):  # one vectorised draw per position, for the whole batch
            idx = np.searchsorted(cdf, cur + rng.random(len(cur)), side="left")
            cur = np.minimum(idx - cur * V, V - 1)
            out[:, j] = cur
        return out

    def decode(self, ids: np.ndarray) -> list[str]:
        return [" ".join(row) for row in self.vocab[ids].tolist()]

    def top1(self, prev_ids: np.ndarray) -> np.ndarray:
        """The most probable next token after each id (reading mode)."""
        if not hasattr(self, "_argmax"):
            self._argmax = self.logp.argmax(axis=1)
        return self._argmax[np.asarray(prev_ids, dtype=np.int64)]
