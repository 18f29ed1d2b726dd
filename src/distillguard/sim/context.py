"""Shared state and helpers of one simulation run (read-only after construction).

:class:`Ctx` bundles the run settings, the loaded corpora and traces, and the split's
parameters; :class:`Account` is what every population builder returns. The helpers here
are the pieces several populations share: drawing a conversation, running one human chat
session, building an identity.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from math import exp

from distillguard.sim import identity as idn
from distillguard.sim.corpora import Corpora, Item
from distillguard.sim.exchange import Caller, LogProfile, Style, approx_tokens, lognormal_int, random_log_profile
from distillguard.sim.params import CHAT_SOURCE_WEIGHTS, PARAMS
from distillguard.sim.rng import lognormal_between, substream
from distillguard.sim.timing import DAY_MS, HourSampler, poisson, shift_hours
from distillguard.sim.traces import Traces

Event = tuple[int, dict]


def rfc3339_ms(ms: int) -> str:
    """``2026-11-02T09:30:00.123Z`` for epoch milliseconds."""
    t = time.gmtime(ms // 1000)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms % 1000:03d}Z"
    )


@dataclass
class Account:
    """One simulated account and its (lazy) event stream.

    Attributes
    ----------
    account_id, population, label, campaign : str
        Label-file columns (``campaign`` is empty for benign accounts).
    attack_start_ms : int or None
        Exact time of the first attack-phase exchange when the account turns bad part-way.
    events : iterator of (int, dict)
        ``(ts_ms, record)`` in increasing ``ts_ms``; records lack ``request_id``/``ts``.
    """

    account_id: str
    population: str
    label: str
    campaign: str
    attack_start_ms: int | None
    events: Iterator[Event]


@dataclass
class Ctx:
    """Run-wide settings and data; see :func:`distillguard.sim.engine.simulate`."""

    seed: int
    split: str
    t0: int
    t1: int
    scale: float
    corpora: Corpora
    traces: Traces
    used_ids: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.P = PARAMS[self.split]
        self.human_hours = HourSampler(self.traces.hour_weights)
        # Office hours: the human profile with its late-night student tail cut, shifted so
        # the working day starts at 9:00 (RAGPulse users are students who peak later).
        office = [w if 8 <= h <= 19 else w * 0.12 for h, w in enumerate(shift_hours(self.traces.hour_weights, -1))]
        self.office_hours = HourSampler(office)
        names = [s for s in CHAT_SOURCE_WEIGHTS if self.corpora.chat.get(s)]
        self._chat_names = names
        total, cum = 0.0, []
        for s in names:
            total += CHAT_SOURCE_WEIGHTS[s]
            cum.append(total)
        self._chat_cum = [c / total for c in cum]

    @property
    def span_ms(self) -> int:
        return self.t1 - self.t0

    def rng(self, *keys: object) -> random.Random:
        """Independent stream for ``keys`` within this run."""
        return substream(self.seed, self.split, *keys)

    def count(self, base: float) -> int:
        """Accounts (or groups) at this run's scale; every population keeps at least one."""
        return max(1, int(round(base * self.scale)))

    def new_account_id(self, *keys: object) -> str:
        i = 0
        while True:
            aid = idn.account_id(self.seed, self.split, *keys, i)
            if aid not in self.used_ids:
                self.used_ids.add(aid)
                return aid
            i += 1

    def created_at(self, rng: random.Random, days_lo: float, days_hi: float) -> tuple[int, str]:
        """Account opening time ``days_lo..days_hi`` days before the window (ms, text)."""
        ms = self.t0 - int(lognormal_between(rng, max(days_lo, 0.01), days_hi) * DAY_MS) - rng.randint(0, 3_600_000)
        return ms, rfc3339_ms(ms)

    # --- content --------------------------------------------------------------------------

    def chat_thread(self, rng: random.Random) -> tuple[str, ...]:
        """A real conversation (user turns) from the weighted organic sources."""
        i = bisect.bisect_left(self._chat_cum, rng.random())
        pool = self.corpora.chat[self._chat_names[min(i, len(self._chat_names) - 1)]]
        return pool[int(rng.random() * len(pool))]

    def harvest_pool(self, names: list[str]) -> list[Item]:
        out: list[Item] = []
        for n in names:
            out.extend(self.corpora.harvest.get(n, []))
        return out

    def available(self, names: list[str]) -> list[str]:
        return [n for n in names if self.corpora.harvest.get(n)]


# --- identities -------------------------------------------------------------------------------


def consumer_static(
    ctx: Ctx,
    rng: random.Random,
    aid: str,
    *,
    tenure: tuple[float, float] = (3, 900),
    email: str | None = None,
    card: str | None = None,
    org: str | None = None,
) -> tuple[dict, int]:
    """Identity fields of an individual's account; returns ``(static, created_ms)``."""
    created_ms, created = ctx.created_at(rng, *tenure)
    static = {
        "account_id": aid,
        "api_key_id": ["key_" + idn.short_id(aid, k, length=10) for k in range(1 if rng.random() < 0.8 else 2)],
        "account_created_at": created,
        "payment_fingerprint": card
        if card is not None
        else (idn.payment_fingerprint(aid) if rng.random() < 0.85 else None),
        "email_domain": email or _consumer_mail(rng),
    }
    if org:
        static["org_id"] = org
    return static, created_ms


def _consumer_mail(rng: random.Random) -> str:
    u = rng.random()
    if u < 0.02:
        return rng.choice(idn.DISPOSABLE_MAIL)  # privacy relays and throwaways: not only attackers
    return idn.free_mail(rng) if u < 0.8 else idn.company_domain(rng)


def home_egress(rng: random.Random, country: str, *, mobile_share: float = 0.15, vpn_share: float = 0.04) -> idn.Egress:
    """Where an individual connects from: home broadband, a phone, or a VPN."""
    u = rng.random()
    if u < mobile_share:
        nets = [idn.WORLD.pick(rng, "mobile", country)]
        return idn.Egress(rng, "cgnat", nets, v6_share=0.3 if rng.random() < 0.4 else 0.0)
    if u < mobile_share + vpn_share:
        return idn.Egress(rng, "rotate", [idn.WORLD.pick(rng, "vpn")])
    net = idn.WORLD.pick(rng, "residential", country)
    return idn.Egress(rng, "fixed", [net], n_fixed=1, v6_share=0.5 if rng.random() < 0.25 else 0.0)


def consumer_user_agents(rng: random.Random) -> list[str]:
    """Clients a person uses: the web console, a chat app, or a script with an SDK."""
    u = rng.random()
    if u < 0.35:
        return [idn.browser_user_agent(rng)]
    if u < 0.6:
        return [idn.app_user_agent(rng)]
    if u < 0.9:
        return [idn.sdk_user_agent(rng)]
    return [idn.browser_user_agent(rng), idn.sdk_user_agent(rng)]


def chat_style(rng: random.Random) -> Style:
    """Request parameters of a person chatting through some client."""
    models = [
        "frontier-large",
        "frontier-mini",
        "frontier-reasoning",
        "frontier-large-2025-08",
        "frontier-reasoning-mini",
        "frontier-nano",
    ]
    w = [
        rng.random() * 5 + 1,
        rng.random() * 4,
        rng.random() * 1.5 if rng.random() < 0.5 else 0,
        rng.random(),
        rng.random() if rng.random() < 0.3 else 0,
        rng.random() * 0.5 if rng.random() < 0.2 else 0,
    ]
    temp = rng.choice([None, None, None, 0.7, 1.0, 0.5, 0.2, 0.8])
    return Style(
        models=models,
        model_weights=w,
        temperature=temp,
        top_p=rng.choice([None] * 6 + [1.0, 0.95, 0.9]),
        n=None,
        max_tokens=rng.choice([None, None, None, 1024, 2048, 4096, 800, 1500]),
        stream=rng.choice([True, True, True, False, None]),
        reasoning_effort=rng.choice([None, "low", "medium", "medium", "high"]),
        system_prompt=rng.choice([None, None, None, "You are a helpful assistant.", "Answer concisely."]),
        p429=0.001,
        speed=lognormal_between(rng, 0.7, 1.4),
    )


def make_caller(
    rng: random.Random, static: dict, egress, uas: list[str], style: Style, profile: LogProfile | None = None
) -> Caller:
    return Caller(rng, static, egress, uas, style, profile or random_log_profile(rng))


# --- behaviour --------------------------------------------------------------------------------


def chat_output_tokens(ctx: Ctx, rng: random.Random, prompt: str) -> int:
    """Output length of a chat answer: a real Azure conv sample, longer for long asks."""
    _, gen = ctx.traces.chat_tokens.draw(rng)
    if len(prompt) > 1500:
        gen = int(gen * 1.6)
    return max(1, int(gen * exp(rng.gauss(0, 0.3))))


def conv_id(rng: random.Random) -> str:
    return f"conv_{rng.getrandbits(64):016x}"


def chat_session(
    ctx: Ctx,
    rng: random.Random,
    caller: Caller,
    start: int,
    *,
    size: int | None = None,
    extra_items: list[str] | None = None,
    casual: float = 0.0,
) -> Iterator[Event]:
    """One sitting of a person chatting: real conversations, real think times.

    The number of requests is the sum of one to seven RAGPulse session sizes (or ``size``);
    conversations are real threads whose turns are sent in order, each after the previous answer arrived
    plus a RAGPulse think gap. ``extra_items`` (homework problems) replace a thread with
    probability ``casual``.
    """
    tr = ctx.traces
    if size is None:
        # A chat sitting strings together a few RAGPulse-sized question bursts.
        k = sum(tr.session_sizes.draw(rng) for _ in range(1 + min(poisson(rng, 1.5), 6)))
    else:
        k = size
    ts = start
    thread: tuple[str, ...] = ()
    pos = 0
    cid = None
    history = 0
    if caller.egress is not None:
        caller.egress.new_session()
    for _ in range(k):
        if pos >= len(thread):
            if extra_items and rng.random() < casual:
                thread = (rng.choice(extra_items),)
            else:
                thread = ctx.chat_thread(rng)
            pos, history, cid = 0, 0, conv_id(rng)
        prompt = thread[pos]
        pos += 1
        want = chat_output_tokens(ctx, rng, prompt)
        rec = caller.make(prompt=prompt, want_out=want, extra_in=history, conversation_id=cid, turn=pos)
        yield ts, rec
        history += approx_tokens(prompt) + caller.last_out
        ts += caller.last_latency + int(tr.think_gaps_s.draw(rng) * 1000 * exp(rng.gauss(0, 0.3))) + 1500


def human_chat_events(
    ctx: Ctx,
    rng: random.Random,
    caller: Caller,
    sessions: Iterator[int],
    *,
    extra_items: list[str] | None = None,
    casual: float = 0.0,
    size: tuple[int, int] | None = None,
    until: int | None = None,
) -> Iterator[Event]:
    """Chain sessions without overlap: a person finishes a sitting before starting the next."""
    free = ctx.t0
    end = ctx.t1 if until is None else until
    for s in sessions:
        s = max(s, free)
        if s >= end:
            return
        k = rng.randint(*size) if size else None
        last = s
        for ts, rec in chat_session(ctx, rng, caller, s, size=k, extra_items=extra_items, casual=casual):
            if ts >= end:
                return
            last = ts
            yield ts, rec
        free = last + 60_000


def harvest_out_tokens(rng: random.Random, median: float) -> int:
    """Output length a harvester's output-maximising ask produces (per choice)."""
    return lognormal_int(rng, median, 0.55, lo=20)
