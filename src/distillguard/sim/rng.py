"""Deterministic randomness and stable hashing for the simulator.

Every random choice in the simulator comes from a :class:`random.Random` seeded by
:func:`substream`, keyed by the run seed, the split and the name of the thing being drawn
(an account, a campaign, a corpus). Two consequences matter:

* the same ``(seed, hours, scale, split)`` always writes the same bytes, because no draw
  depends on dict/set iteration order, ``hash()`` (salted per process) or wall time;
* adding one account to a population does not reshuffle every other account, because each
  account owns its own stream.
"""

from __future__ import annotations

import math
import random

import xxhash

_MASK64 = (1 << 64) - 1


def stable_hash(*parts: object) -> int:
    """64-bit hash of ``parts`` that is identical across processes and platforms.

    Parameters
    ----------
    *parts : object
        Anything with a stable ``str()`` (ints, strings, floats).

    Returns
    -------
    int
        Unsigned 64-bit integer.
    """
    return xxhash.xxh64_intdigest("\x1f".join(str(p) for p in parts).encode("utf-8", "replace"))


def substream(*parts: object) -> random.Random:
    """An independent, reproducible random stream named by ``parts``."""
    return random.Random(stable_hash("distillguard-sim", *parts))


def short_id(*parts: object, length: int = 12) -> str:
    """Hex id of ``length`` characters derived from ``parts`` (looks opaque, is reproducible)."""
    return xxhash.xxh3_128_hexdigest("\x1f".join(str(p) for p in parts).encode("utf-8", "replace"))[:length]


def split_half(text: str) -> str:
    """Which half of a corpus ``text`` belongs to: ``"dev"`` or ``"holdout"``.

    The split is a stable hash of the whitespace-normalised text, so a prompt that occurs
    twice (in two files, or twice in one) always lands in the same half, and the two halves
    are disjoint by construction.
    """
    key = " ".join(text.split())
    return "dev" if xxhash.xxh64_intdigest(key.encode("utf-8", "replace"), seed=20261101) & 1 == 0 else "holdout"


def in_split(text: str, split: str) -> bool:
    """True when ``text`` belongs to ``split``."""
    return split_half(text) == split


def mix64(n: int, salt: int) -> int:
    """Bijective 64-bit mix of ``n`` (splitmix64 finaliser): distinct ``n`` give distinct outputs.

    Used for request ids: they look random, yet are unique by construction rather than by luck.
    """
    x = (n + salt) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def lognormal_between(rng: random.Random, lo: float, hi: float) -> float:
    """Draw log-uniformly-centred, lognormally-spread values mostly inside ``[lo, hi]``.

    The median is the geometric mean of the bounds and about 95 % of draws fall inside them;
    the rest spill over, so no bound is a hard edge that a detector could key on.
    """
    mu = (math.log(lo) + math.log(hi)) / 2
    sigma = (math.log(hi) - math.log(lo)) / 4
    return math.exp(rng.gauss(mu, sigma))
