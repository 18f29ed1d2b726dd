"""Prompt-template signatures that partners can compute from their own logs: scheme ``dg-sig-v1``.

A harvesting campaign sends thousands of different items inside the same few instruction
wrappers ("Think step by step and show all of your reasoning: ..."). The wrapper sits at the
head or the tail of the prompt. ``dg-sig-v1`` reduces each prompt to a handful of 64-bit
*band keys* of its head and tail; two prompts with the same (or a slightly edited) wrapper
share band keys, unrelated prompts almost never do. Band keys are hashed with the coalition key
before they leave the provider (kind ``prompt_band`` in :mod:`.keys`), so no text, and no
value that could be checked against guessed text without the key, is ever shared.

The scheme is fixed; any change gets a new name (``dg-sig-v2``) so that signatures computed by
different partners are always comparable. Definition:

1. **Normalise**: Unicode NFKC, then ``str.casefold()``, then every run of decimal digits
   (``\\d+``) becomes ``0``.
2. **Tokens**: ``re.findall(r"\\w+", text)`` (Python, Unicode ``\\w``). Only the ends of a
   prompt matter, so a prompt longer than ``2 * WINDOW`` (``WINDOW`` = 400 characters of the
   original text) is tokenised in two windows, its first and its last 400 characters; the
   head window's last token and the tail window's first token are dropped (a window edge may
   cut a word).
3. **Frames**: head = the first ``FRAME_TOKENS`` = 12 tokens, tail = the last 12 (of the whole
   prompt, or of the head and tail windows). A prompt whose head and tail token lists are
   shorter than ``MIN_TOKENS`` = 8 has no signature. Head and tail overlap when the prompt is
   short.
4. **Shingles**: each frame's set of ``SHINGLE`` = 3 consecutive tokens joined by one space;
   each shingle hashes to ``h = xxh64(utf8(shingle), seed=0)`` (64 bits).
5. **MinHash**: ``NUM_PERM`` = 20 hash functions ``pi_k(h) = fmix64(h XOR s_k)``, where
   ``fmix64`` is the SplitMix64 finaliser (``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
   z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31``, all modulo 2**64) and ``s_k`` is the
   k-th output (k = 0..19) of the SplitMix64 generator started at ``SEED`` = 0x64677369677631
   (``"dgsigv1"``); ``m_k`` is the minimum of ``pi_k`` over the frame's shingles.
6. **Bands (LSH)**: the 20 values are cut into ``BANDS`` = 5 bands of ``ROWS`` = 4; band ``j``
   of frame ``f`` (``h`` or ``t``) has the key
   ``xxh64(b"dg-sig-v1|" + f + b"|" + str(j) + b"|" + m[4j..4j+3] as four little-endian
   uint64, seed=0)`` written as 16 lower-case hex digits. A prompt has up to 10 band keys.

Two frames with Jaccard similarity J share at least one band with probability
``1 - (1 - J**4)**5``: 1.0 for the same wrapper, 0.92 at J = 0.8 (a word changed), 0.36 at
J = 0.54, 0.04 at J = 0.3. Whether a shared band means anything is decided by the exporter:
only bands that recur across a flagged campaign and never occur in the provider's other
traffic are shared (see :mod:`.export`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

import numpy as np
import xxhash

SCHEME = "dg-sig-v1"
MIN_TOKENS = 8
FRAME_TOKENS = 12
SHINGLE = 3
NUM_PERM = 20
BANDS = 5
ROWS = 4
WINDOW = 400
SEED = 0x64677369677631
_TOKEN = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")
_M64 = (1 << 64) - 1


def splitmix64(seed: int, n: int) -> list[int]:
    """The first ``n`` outputs of SplitMix64 started at ``seed``."""
    out, x = [], seed & _M64
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & _M64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        out.append(z ^ (z >> 31))
    return out


def permutations(num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """The MinHash seeds ``s_k`` of the scheme (uint64 array)."""
    return np.array(splitmix64(seed, num_perm), dtype=np.uint64)


def fmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_S = permutations()


def tokens(text: str) -> list[str]:
    """Normalised tokens of a prompt (steps 1-2)."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return _TOKEN.findall(_DIGITS.sub("0", t))


def frames(text: str | None) -> list[tuple[str, list[str]]]:
    """``[("h", head tokens), ("t", tail tokens)]``, or ``[]`` when the prompt is too short."""
    if not text:
        return []
    if len(text) <= 2 * WINDOW:
        head = tail = tokens(text)
    else:
        head = tokens(text[:WINDOW])[:-1]
        tail = tokens(text[-WINDOW:])[1:]
    if len(head) < MIN_TOKENS or len(tail) < MIN_TOKENS:
        return []
    return [("h", head[:FRAME_TOKENS]), ("t", tail[-FRAME_TOKENS:])]


def shingle_hashes(frame: Sequence[str]) -> list[int]:
    """64-bit hashes of the frame's distinct shingles (step 4)."""
    h = xxhash.xxh64_intdigest
    sh = {" ".join(frame[i:i + SHINGLE]) for i in range(max(1, len(frame) - SHINGLE + 1))}
    return [h(s.encode("utf-8")) for s in sh]


def minhash_values(hashes: Sequence[int], seeds: np.ndarray = _S) -> np.ndarray:
    """MinHash of one shingle-hash set (step 5)."""
    h = np.asarray(hashes, dtype=np.uint64)[:, None]
    with np.errstate(over="ignore"):
        return fmix64(h ^ seeds[None, :]).min(axis=0)


_PREFIX = {part: [f"{SCHEME}|{part}|{j}|".encode("ascii") for j in range(BANDS)] for part in ("h", "t")}
_BAND_BYTES = 8 * ROWS


def band_keys_of(part: str, mh: Iterable[int] | np.ndarray) -> list[str]:
    """The LSH band keys of one frame's MinHash values (step 6)."""
    raw = np.asarray(mh, dtype="<u8").tobytes()
    return _band_keys_raw(part, raw, 0)


def _band_keys_raw(part: str, raw: bytes, off: int) -> list[str]:
    pre = _PREFIX[part]
    h = xxhash.xxh64_hexdigest
    return [h(pre[j] + raw[off + j * _BAND_BYTES: off + (j + 1) * _BAND_BYTES]) for j in range(BANDS)]


def band_keys(text: str | None) -> list[str]:
    """All band keys of one prompt (reference implementation, one prompt at a time)."""
    out: list[str] = []
    for part, fr in frames(text):
        out += band_keys_of(part, minhash_values(shingle_hashes(fr)))
    return out


_CACHE: dict[str, list[str]] = {}
_CACHE_MAX = 200_000


def band_keys_batch(texts: Sequence[str | None]) -> list[list[str]]:
    """``band_keys`` for many prompts at once (same result; the MinHash step is vectorised and
    the band keys of frames seen before, such as a template's fixed head, come from a cache)."""
    out: list[list[str]] = [[] for _ in texts]
    todo: dict[str, tuple[str, list[str]]] = {}
    plan: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        for part, fr in frames(text):
            key = part + "\x1f".join(fr)
            plan.append((i, key))
            if key not in _CACHE and key not in todo:
                todo[key] = (part, fr)
    if todo:
        seg_hashes: list[int] = []
        seg_len: list[int] = []
        for part, fr in todo.values():
            hs = shingle_hashes(fr)
            seg_hashes += hs
            seg_len.append(len(hs))
        h = np.asarray(seg_hashes, dtype=np.uint64)[:, None]
        with np.errstate(over="ignore"):
            p = fmix64(h ^ _S[None, :])
        starts = np.concatenate([[0], np.cumsum(seg_len)[:-1]]).astype(np.int64)
        raw = np.ascontiguousarray(np.minimum.reduceat(p, starts, axis=0), dtype="<u8").tobytes()
        row = 8 * NUM_PERM
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
        for r, (key, (part, _)) in enumerate(todo.items()):
            _CACHE[key] = _band_keys_raw(part, raw, r * row)
    for i, key in plan:
        out[i] += _CACHE[key]
    return out
