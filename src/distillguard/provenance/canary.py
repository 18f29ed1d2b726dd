"""Keyed per-account canaries: a trigger -> response pair woven into a few suspect responses.

Each account gets its own pair, derived from the mark key and the account id (HMAC), so nothing
needs to be stored to recognise it later and a hit names the account that leaked it. A pair is
a short reference tag of made-up syllable words, e.g. ``(ref. dakumo velisa torafe nimeku
bosari)``: a reader sees a meaningless tag at the end of an answer; a language model trained on
the harvested answers learns that after ``dakumo velisa`` comes ``torafe nimeku bosari``.

Why the words are made up: they must be rare in natural text (no false hits) and each must be a
token of its own after any tokenisation, so a student that only conditions on recent tokens can
still learn the chain. The response is three words of three syllables out of 75 (~56 bits), so
the chance that a model never trained on it emits it is bounded by (candidate positions) x 2^-56:
:func:`hit_p_value`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .keys import derive

_CONS = "bdfgklmnprstvzh"   # 15 consonants (no c/q/x/y/j/w: their spelling varies)
_VOWELS = "aeiou"
SYLLABLES = [c + v for c in _CONS for v in _VOWELS]  # 75
WORD_SYLLABLES = 3
TRIGGER_WORDS, RESPONSE_WORDS = 2, 3
RESPONSE_SPACE = float(len(SYLLABLES) ** (WORD_SYLLABLES * RESPONSE_WORDS))


def _words(stream: bytes, n: int) -> list[str]:
    vals = int.from_bytes(stream, "big")
    out = []
    for _ in range(n):
        w = ""
        for _ in range(WORD_SYLLABLES):
            vals, r = divmod(vals, len(SYLLABLES))
            w += SYLLABLES[r]
        out.append(w)
    return out


@dataclass(frozen=True)
class Canary:
    account: str
    trigger: str
    response: str
    mark_id: str
    key_id: str

    def tag(self) -> str:
        """The text woven into a response."""
        return f"(ref. {self.trigger} {self.response})"


def canary_for(key: bytes, account: str, key_id: str = "") -> Canary:
    """The account's canary under ``key`` (deterministic)."""
    t = derive(key, "canary-trigger", account)
    r = derive(key, "canary-response", account)
    mark_id = "cn-" + derive(key, "canary-id", account)[:8].hex()
    return Canary(account, " ".join(_words(t, TRIGGER_WORDS)), " ".join(_words(r, RESPONSE_WORDS)), mark_id, key_id)


def selected(key: bytes, request_id: str, rate: float) -> bool:
    """Whether this request gets the canary: a keyed, reproducible draw at ``rate``."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    v = int.from_bytes(derive(key, "canary-select", request_id)[:8], "big")
    return v < rate * 2.0**64


def weave(text: str, canary: Canary) -> str:
    """``text`` with the canary's tag appended as its own last line (the answer above is untouched)."""
    return f"{text.rstrip()}\n\n{canary.tag()}" if text.strip() else canary.tag()


_WS = re.compile(r"\s+")


def hit_p_value(text: str, canary: Canary) -> float | None:
    """None when ``text`` does not contain the canary's response; else an upper bound on the
    probability of that hit for a model never trained on the canary: the response is uniform over
    ``RESPONSE_SPACE`` strings and independent of such a model's output, so the chance that any
    of the text's word windows equals it is at most (number of windows) / RESPONSE_SPACE."""
    norm = _WS.sub(" ", text.lower())
    if canary.response not in norm:
        return None
    windows = max(1, len(norm.split(" ")) - RESPONSE_WORDS + 1)
    return min(1.0, windows / RESPONSE_SPACE)


def find_canaries(texts: list[str], canaries: list[Canary]) -> list[dict]:
    """The canaries whose response occurs in any of ``texts``: one Aho-Corasick pass over all texts
    for all responses (Polars). p-values are Bonferroni-adjusted for the number of canaries tried
    and summed over the texts' word windows (the union bound of :func:`hit_p_value`)."""
    import polars as pl

    if not texts or not canaries:
        return []
    by_resp = {c.response: c for c in canaries}
    s = pl.Series("t", texts, dtype=pl.String).str.to_lowercase().str.replace_all(r"\s+", " ")
    hits = s.str.extract_many(list(by_resp)).explode().drop_nulls().unique().to_list()
    windows = int(s.str.count_matches(" ").sum() or 0) + len(texts)
    p = min(1.0, windows / RESPONSE_SPACE * len(canaries))
    return [{"account_id": by_resp[h].account, "mark_id": by_resp[h].mark_id, "p_value": p} for h in sorted(hits)]
