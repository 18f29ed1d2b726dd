"""Arrival processes: when an account sends its requests.

All functions are generators of epoch-millisecond integers in increasing order, so an
account's events can be produced one at a time and merged with every other account's
without holding a day of traffic in memory.

* :func:`human_sessions` — people: sessions started at local-time-of-day weights taken
  from RAGPulse's real hour profile, a per-user daily session rate, and weekday/weekend
  modulation; what happens inside a session is up to the caller.
* :func:`curve_arrivals` — services: a real ServeGen client's 600-s rate curve (diurnal,
  24/7 or bursty) rescaled to the account's volume, with gamma inter-arrivals whose CV
  follows the client's own per-window CV.
* :func:`renewal` — machines at a steady rate (sweeps, harvest loops) with chosen jitter.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator

from distillguard.sim.traces import SERVEGEN_TZ_H, WINDOW_S, RateProfile

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def poisson(rng: random.Random, lam: float) -> int:
    """Poisson draw (Knuth for small means, rounded normal for large)."""
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def gamma_gap(rng: random.Random, mean_s: float, cv: float) -> float:
    """One inter-arrival gap (seconds) with the given mean and coefficient of variation."""
    cv = min(max(cv, 0.05), 6.0)
    shape = 1.0 / (cv * cv)
    return rng.gammavariate(shape, mean_s / shape)


def _cum(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return [c / total for c in out]


class HourSampler:
    """Draws a local time of day (seconds) from 24 hourly weights."""

    __slots__ = ("cum",)

    def __init__(self, hour_weights: list[float]):
        self.cum = _cum([max(w, 1e-6) for w in hour_weights])

    def draw(self, rng: random.Random) -> float:
        h = bisect.bisect_left(self.cum, rng.random())
        return (min(h, 23) + rng.random()) * 3600.0


def shift_hours(weights: list[float], shift: int) -> list[float]:
    """Rotate an hour profile by ``shift`` hours (e.g. to turn a campus profile into office hours)."""
    return [weights[(h - shift) % 24] for h in range(24)]


def human_sessions(
    rng: random.Random,
    t0_ms: int,
    t1_ms: int,
    *,
    tz_h: float,
    per_day: float,
    hours: HourSampler,
    weekend_factor: float = 0.8,
) -> Iterator[int]:
    """Start times of a person's sessions inside ``[t0_ms, t1_ms)``.

    Parameters
    ----------
    rng : random.Random
        The account's stream.
    t0_ms, t1_ms : int
        Simulation window (epoch ms, UTC).
    tz_h : float
        The person's UTC offset; ``hours`` is in local time.
    per_day : float
        Mean sessions per (week)day.
    hours : HourSampler
        Local hour-of-day profile.
    weekend_factor : float
        Multiplier on Saturdays and Sundays (below 1 for work, above for hobbies).
    """
    tz_ms = int(tz_h * HOUR_MS)
    first_day = (t0_ms + tz_ms) // DAY_MS
    last_day = (t1_ms - 1 + tz_ms) // DAY_MS
    for day in range(first_day, last_day + 1):
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = Sat, Sun
        lam = per_day * (weekend_factor if weekday >= 5 else 1.0)
        k = poisson(rng, lam)
        starts = sorted(day * DAY_MS + int(hours.draw(rng) * 1000) - tz_ms for _ in range(k))
        for s in starts:
            if t0_ms <= s < t1_ms:
                yield s


def curve_arrivals(
    rng: random.Random,
    t0_ms: int,
    t1_ms: int,
    *,
    mean_rps: float,
    profile: RateProfile,
    day_offset: int,
    tz_h: float = SERVEGEN_TZ_H,
    flatten: float = 0.0,
) -> Iterator[int]:
    """Arrivals following a real client's rate curve, rescaled to ``mean_rps``.

    Parameters
    ----------
    mean_rps : float
        Target mean request rate of this account.
    profile : RateProfile
        The real ServeGen client whose shape is borrowed.
    day_offset : int
        Which of the trace's 14 days lines up with the window start (accounts sharing a
        profile then differ).
    tz_h : float
        The account's local UTC offset; ServeGen windows are read as local time so a
        diurnal curve peaks in the account's daytime.
    flatten : float
        0 keeps the real curve; 1 replaces it with its mean (used to spread a curve's
        peaks for harvesters imitating a service).
    """
    offset_s = day_offset * 86400 + tz_h * 3600
    t = t0_ms / 1000.0
    end = t1_ms / 1000.0
    while t < end:
        w_end = (math.floor((t + offset_s) / WINDOW_S) + 1) * WINDOW_S - offset_s
        rel, cv = profile.rate_at(t, offset_s)
        rate = mean_rps * ((1 - flatten) * rel + flatten)
        if rate <= 0:
            t = w_end
            continue
        cv = cv if cv > 0 else 1.0
        # Start each window at a random phase of the renewal process so windows do not align.
        t += gamma_gap(rng, 1.0 / rate, cv) * rng.random()
        while t < w_end and t < end:
            yield int(t * 1000)
            t += gamma_gap(rng, 1.0 / rate, cv)
        # Discard the overshoot: the next window restarts at its own rate and phase.
        t = w_end


def renewal(rng: random.Random, t0_ms: int, t1_ms: int, *, rps: float, cv: float) -> Iterator[int]:
    """Steady arrivals at ``rps`` with inter-arrival CV ``cv`` (0.1 = metronome, 1 = Poisson)."""
    t = t0_ms / 1000.0 + gamma_gap(rng, 1.0 / rps, cv) * rng.random()
    end = t1_ms / 1000.0
    while t < end:
        yield int(t * 1000)
        t += gamma_gap(rng, 1.0 / rps, cv)
