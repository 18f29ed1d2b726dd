"""Harvesting campaigns (label ``attack``), from blunt to evasive.

A campaign is one operator: one or many accounts that share material, wrappers and
infrastructure to different degrees. Accounts of a campaign that sweep one item list
jointly take every K-th item (``i, i+K, i+2K, ...``), so their combined traffic covers the
benchmark while each account alone looks partial. See docs/benchmark.md for each style.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

from distillguard.sim import identity as idn
from distillguard.sim.agents import agent_session, concurrent_sessions
from distillguard.sim.benign import person_events, router_events, router_setup
from distillguard.sim.context import (
    Account,
    Ctx,
    Event,
    chat_style,
    consumer_static,
    consumer_user_agents,
    conv_id,
    harvest_out_tokens,
    home_egress,
    make_caller,
    rfc3339_ms,
)
from distillguard.sim.corpora import Item
from distillguard.sim.exchange import Caller, Style, approx_tokens, lognormal_int, random_log_profile
from distillguard.sim.params import CODE_SOURCES, HARVEST_SOURCES
from distillguard.sim.rng import lognormal_between
from distillguard.sim.timing import curve_arrivals, gamma_gap, human_sessions, poisson, renewal
from distillguard.sim.wrappers import (
    AGENT_CODE_TASK,
    AGENT_CODE_TOOLS,
    AGENT_HARVEST_SYSTEM,
    AGENT_REASONING_TOOLS,
    AGENT_SYSTEM,
    AGENT_TOOL_TASK,
    COT,
    HARVEST,
    HARVEST_CODE,
    INSTRUCTION_GEN,
    MULTILINGUAL,
    RUBRIC_PAIR,
    RUBRIC_SINGLE,
    STUDENT,
    STUDENT_FOLLOWUP,
    fill,
    paraphrased_wrapper,
    student_typos,
)

_LANG_COUNTRY = {
    "zh": "CN",
    "es": "ES",
    "fr": "FR",
    "de": "DE",
    "ru": "RU",
    "ja": "JP",
    "ko": "KR",
    "pt": "BR",
    "ar": "SA",
    "hi": "IN",
    "it": "IT",
    "tr": "TR",
    "vi": "VN",
    "id": "ID",
    "pl": "PL",
    "nl": "NL",
    "uk": "UA",
    "en": "US",
}


class CampaignNames:
    """Sequential campaign ids within a run: ``c01_blunt``, ``c02_hydra``, ..."""

    def __init__(self):
        self.n = 0

    def __call__(self, short: str) -> str:
        self.n += 1
        return f"c{self.n:02d}_{short}"


# --- shared pieces -----------------------------------------------------------------------------


def sweep_list(ctx: Ctx, rng: random.Random, families: list[str], k: tuple[int, int] = (1, 3)) -> list[Item]:
    """A campaign's material: a few harvest sets, concatenated (dataset order or shuffled)."""
    names = []
    for fam in families:
        names += ctx.available(HARVEST_SOURCES[fam])
    names = sorted(set(names))
    rng.shuffle(names)
    chosen = names[: rng.randint(*k)] or names[:1]
    items = ctx.harvest_pool(chosen)
    if rng.random() < 0.5:
        rng.shuffle(items)  # half the operators shuffle, half iterate in dataset order
    return items or ctx.harvest_pool(ctx.available(["gsm8k_train", "gsm8k_test", "math"]))


def partition(items: list[Item], i: int, k: int, offset: int = 0) -> Iterator[tuple[int, Item]]:
    """Items ``i, i+k, i+2k, ...`` of ``items``, cycling (yields ``(pass, item)``)."""
    if not items:
        return
    j = i + offset
    while True:
        yield j // len(items), items[j % len(items)]
        j += k


def instruction_gen_prompt(ctx: Ctx, rng: random.Random) -> str | None:
    """Self-instruct-style bulk request: "write N new tasks like these" with seed examples."""
    seeds = ctx.corpora.harvest.get("self_instruct_seed") or ctx.corpora.harvest.get("alpaca")
    if not seeds:
        return None
    ex = rng.sample(seeds, min(3, len(seeds)))
    if ctx.corpora.instruction_prompt:
        body = "".join(
            f"###\n{j + 1}. Instruction: {it.text}\n{j + 1}. Input:\n<noinput>\n{j + 1}. Output:\n{it.answer or ''}\n"
            for j, it in enumerate(ex)
        )
        return f"{ctx.corpora.instruction_prompt}\n{body}###\n{len(ex) + 1}. Instruction:"
    examples = "\n\n".join(f"Instruction: {it.text}\nOutput: {it.answer or ''}" for it in ex)
    return INSTRUCTION_GEN[ctx.split].replace("{n}", str(rng.choice([10, 20, 20, 40]))).replace("{examples}", examples)


def harvest_prompt(
    ctx: Ctx, rng: random.Random, item: Item, wrapper: str | None, code_wrapper: str | None, paraphrase: bool
) -> str:
    """Wrap one item the way the campaign does (code items get a code wrapper)."""
    if paraphrase:
        return fill(paraphrased_wrapper(rng), item.text)
    w = code_wrapper if item.source in CODE_SOURCES else wrapper
    return fill(w, item.text) if w else item.text


def attacker_static(
    ctx: Ctx,
    rng: random.Random,
    aid: str,
    *,
    tenure: tuple[float, float] = (0.2, 30),
    email: str | None = None,
    card: str | None = None,
) -> dict:
    static, _ = consumer_static(ctx, rng, aid, tenure=tenure, email=email, card=card)
    if static.get("payment_fingerprint") is None and rng.random() < 0.7:
        static["payment_fingerprint"] = idn.payment_fingerprint(aid)
    return static


def harvest_style(ctx: Ctx, rng: random.Random, P: dict, **over) -> Style:
    """Request parameters of a harvesting script (output-maximising by default)."""
    st = Style(
        models=[rng.choice(["frontier-large", "frontier-large", "frontier-reasoning", "frontier-large-2025-08"])],
        temperature=rng.choice(P.get("temperature", [0.7, 1.0, None])),
        n=rng.choice(P.get("n", [1])),
        max_tokens=rng.choice(P.get("max_tokens", [4096, 8192, None])),
        stream=rng.choice([False, False, True, None]),
        reasoning_effort=rng.choice(["high", "high", "medium"]),
        p429=0.01,
        speed=lognormal_between(rng, 0.8, 1.3),
    )
    if st.n == 1 and rng.random() < 0.5:
        st.n = None
    for k, v in over.items():
        setattr(st, k, v)
    return st


def script_egress(rng: random.Random, holdout_vpn: bool = False) -> idn.Egress:
    """A harvesting script's origin: a cloud VM (or, sometimes, a rotating VPN)."""
    if holdout_vpn and rng.random() < 0.5:
        return idn.Egress(rng, "rotate", [idn.WORLD.pick(rng, "vpn")])
    return idn.Egress(rng, "fixed", [idn.WORLD.pick(rng, "cloud")], n_fixed=rng.randint(1, 3))


def _sweep_events(
    ctx: Ctx,
    rng: random.Random,
    caller: Caller,
    times: Iterator[int],
    items: Iterator[tuple[int, Item]],
    wrapper: str | None,
    code_wrapper: str | None,
    paraphrase: bool,
    out_median: float,
    instr_share: float = 0.0,
) -> Iterator[Event]:
    for ts in times:
        _, it = next(items)
        prompt = None
        if instr_share and rng.random() < instr_share:
            prompt = instruction_gen_prompt(ctx, rng)
        if prompt is None:
            prompt = harvest_prompt(ctx, rng, it, wrapper, code_wrapper, paraphrase)
        yield ts, caller.make(prompt=prompt, want_out=harvest_out_tokens(rng, out_median))


def _chat_stream(ctx: Ctx, rng: random.Random, caller: Caller, rps: float, t0: int | None = None) -> Iterator[Event]:
    """Ordinary customer chat resold through an attacker's accounts (cover traffic)."""
    if rps <= 0:
        return
    for ts in renewal(rng, t0 or ctx.t0, ctx.t1, rps=rps, cv=1.3):
        thread = ctx.chat_thread(rng)
        cid = conv_id(rng)
        yield ts, caller.make(prompt=thread[0], want_out=harvest_out_tokens(rng, 180), conversation_id=cid, turn=1)


def _merge(*streams: Iterator[Event]) -> Iterator[Event]:
    return heapq.merge(*streams, key=lambda e: e[0])


def _attack(aid: str, pop: str, campaign: str, events: Iterator[Event], start: int | None = None) -> Account:
    return Account(aid, pop, "attack", campaign, start, events)


# --- campaign styles ---------------------------------------------------------------------------


def build_blunt(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """One account, high steady rate, sweeping benchmark sets with output-maximising asks."""
    P = ctx.P["blunt_sweep"]
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("blunt_sweep", c)
        camp = names("blunt")
        aid = ctx.new_account_id("blunt_sweep", c)
        start = ctx.t0 if rng.random() < 0.6 else ctx.t0 + int(rng.random() * 0.5 * ctx.span_ms)
        static = attacker_static(ctx, rng, aid, email=rng.choice([None, rng.choice(idn.DISPOSABLE_MAIL)]))
        if start > ctx.t0:
            static["account_created_at"] = rfc3339_ms(start - rng.randint(60_000, 6 * 3_600_000))
        rps = lognormal_between(rng, *P["rps"])
        style = harvest_style(ctx, rng, P, p429=min(0.25, 0.4 * rps))
        fams = rng.choice([["reasoning"], ["reasoning", "code"], ["code"], ["instruct"], ["reasoning", "instruct"]])
        items = sweep_list(ctx, rng, fams, (1, 3))
        fam_ua = rng.choice(["openai-python", "python-requests", "curl", "httpx", "aiohttp", "openai-node"])
        caller = make_caller(
            rng, static, script_egress(rng, ctx.split == "holdout"), [idn.sdk_user_agent(rng, fam_ua)], style
        )
        if rng.random() < P["curve_timing_share"]:
            # Holdout-only: borrow a real API client's 24/7 curve, so timing alone looks like an app.
            prof = rng.choice(ctx.traces.profiles(min_busy=0.9, max_day_night=4.0))
            times = curve_arrivals(rng, start, ctx.t1, mean_rps=rps, profile=prof, day_offset=rng.randint(0, 13))
        else:
            times = renewal(rng, start, ctx.t1, rps=rps, cv=lognormal_between(rng, *P["cv"]))
        events = _sweep_events(
            ctx,
            rng,
            caller,
            times,
            partition(items, 0, 1),
            rng.choice(HARVEST[ctx.split]),
            rng.choice(HARVEST_CODE[ctx.split]),
            P["paraphrase"] and rng.random() < 0.6,
            out_median=lognormal_between(rng, 500, 1400),
            instr_share=0.3 if "instruct" in fams else 0.0,
        )
        out.append(_attack(aid, "blunt_sweep", camp, events))
    return out


def build_hydra(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Dozens of linked accounts behind proxies, load-balanced round-robin over one sweep."""
    P = ctx.P["hydra"]
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("hydra", c)
        camp = names("hydra")
        k_base = rng.randint(*P["accounts"])
        k = ctx.count(k_base)
        # The campaign rate is set for its scale-1 size; per-account load stays the same at any scale.
        rps = lognormal_between(rng, *P["rps"]) * k / k_base
        resold = rng.uniform(*P["resold_share"])
        residential = P["residential_proxy"][c % len(P["residential_proxy"])]
        paraphrase = P["paraphrase"][c % len(P["paraphrase"])]
        items = sweep_list(
            ctx, rng, rng.choice([["reasoning"], ["reasoning", "code"], ["instruct", "reasoning"]]), (2, 4)
        )
        wrapper, code_wrapper = rng.choice(HARVEST[ctx.split]), rng.choice(HARVEST_CODE[ctx.split])
        alt_wrapper = rng.choice(HARVEST[ctx.split]) if ctx.split == "holdout" else wrapper
        nets = [idn.WORLD.pick(rng, "proxy_dc") for _ in range(rng.randint(1, 2))]
        subnets = [(rng.choice(nets), rng.randint(0, 4000)) for _ in range(rng.randint(3, 6))]
        if ctx.split == "dev":
            uas = [idn.sdk_user_agent(rng, rng.choice(["openai-python", "httpx", "python-requests"]))]
        else:
            uas = [idn.sdk_user_agent(rng) for _ in range(3)]
        domains = [rng.choice(idn.DISPOSABLE_MAIL), idn.company_domain(rng)][: rng.randint(1, 2)]
        cards = [idn.payment_fingerprint("hydra", ctx.seed, ctx.split, c, j) for j in range(max(2, k // 8))]
        shared_frac = rng.uniform(*P["shared_cards"])
        base_style = harvest_style(ctx, rng, ctx.P["blunt_sweep"])
        base_age = lognormal_between(rng, 2, 40)
        t_start = ctx.t0 + int(rng.random() * 0.1 * ctx.span_ms)
        for i in range(k):
            arng = ctx.rng("hydra", c, i)
            aid = ctx.new_account_id("hydra", c, i)
            card = arng.choice(cards) if arng.random() < shared_frac else None
            static = attacker_static(
                ctx, arng, aid, tenure=(base_age, base_age + 3), email=arng.choice(domains), card=card
            )
            if residential:
                egress = idn.Egress(arng, "residential_proxy", [])
            else:
                egress = idn.Egress(arng, "fixed", [subnets[0][0]])
                egress.fixed = [
                    (idn.ipv4_in(arng, net, subnet=sn), net)
                    for net, sn in (arng.choice(subnets) for _ in range(arng.randint(1, 3)))
                ]
            style = Style(**{**base_style.__dict__})
            style.p429 = 0.01
            caller = make_caller(arng, static, egress, [arng.choice(uas)], style, random_log_profile(arng))
            times = _round_robin(arng, t_start, ctx.t1, i, k, rps)
            sweep = _sweep_events(
                ctx,
                arng,
                caller,
                times,
                partition(items, i, k),
                wrapper if i % 2 == 0 else alt_wrapper,
                code_wrapper,
                paraphrase,
                out_median=lognormal_between(rng, 500, 1100),
            )
            chat = _chat_stream(ctx, ctx.rng("hydra_chat", c, i), caller, rps * resold / max(1e-9, 1 - resold) / k)
            out.append(_attack(aid, "hydra", camp, _merge(sweep, chat)))
    return out


def _round_robin(rng: random.Random, t0: int, t1: int, i: int, k: int, rps: float) -> Iterator[int]:
    """Account ``i``'s slots in a campaign-wide schedule of ``rps`` dealt round-robin to ``k`` accounts."""
    step = 1000.0 / rps
    j = i
    while True:
        t = t0 + j * step + (rng.random() - 0.5) * 0.8 * step
        if t >= t1:
            return
        if t >= t0:
            yield int(t)
        j += k


def build_cot(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Asks that coerce the full reasoning trace, in many languages."""
    P = ctx.P["cot_coercion"]
    langs_all = sorted(COT[ctx.split])
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("cot_coercion", c)
        camp = names("cot")
        k = rng.randint(*P["accounts"])
        items = sweep_list(
            ctx, rng, rng.choice([["reasoning"], ["reasoning", "code"], ["reasoning", "instruct"]]), (1, 3)
        )
        card = idn.payment_fingerprint("cot", ctx.seed, ctx.split, c) if rng.random() < 0.4 else None
        for i in range(k):
            arng = ctx.rng("cot_coercion", c, i)
            aid = ctx.new_account_id("cot_coercion", c, i)
            static = attacker_static(ctx, arng, aid, tenure=(1, 200), card=card)
            langs = arng.sample(langs_all, min(len(langs_all), arng.randint(*P["langs"])))
            cot_share = arng.uniform(*P["cot_share"])
            style = harvest_style(
                ctx,
                arng,
                ctx.P["blunt_sweep"],
                models=[arng.choice(["frontier-reasoning", "frontier-reasoning-mini", "frontier-large"])],
                reasoning_effort=arng.choice(["high", "high", "medium", None]),
            )
            egress = (
                script_egress(arng) if arng.random() < 0.6 else home_egress(arng, _LANG_COUNTRY.get(langs[0], "US"))
            )
            caller = make_caller(arng, static, egress, [idn.sdk_user_agent(arng)], style)
            rps = lognormal_between(arng, *P["rps"])
            if arng.random() < 0.5:
                times = renewal(arng, ctx.t0, ctx.t1, rps=rps, cv=arng.uniform(0.3, 1.2))
            else:
                times = _bursts(ctx, arng, rps, _LANG_COUNTRY.get(langs[0], "US"))
            out.append(
                _attack(
                    aid,
                    "cot_coercion",
                    camp,
                    _cot_events(ctx, arng, caller, times, partition(items, i, k), langs, cot_share),
                )
            )
    return out


def _bursts(ctx: Ctx, rng: random.Random, rps: float, country: str) -> Iterator[int]:
    """Batch jobs launched during the operator's working day; mean rate about ``rps``."""
    per_day = rng.uniform(2, 5)
    per_burst = max(5, int(rps * 86400 / per_day))
    burst_rps = rng.uniform(0.1, 0.6)
    free = ctx.t0
    for s in human_sessions(rng, ctx.t0, ctx.t1, tz_h=idn.tz_of(country), per_day=per_day, hours=ctx.office_hours):
        t = max(s, free) / 1000.0
        for _ in range(per_burst):
            if t * 1000 >= ctx.t1:
                return
            yield int(t * 1000)
            t += gamma_gap(rng, 1.0 / burst_rps, 0.5)
        free = int(t * 1000)


def _cot_events(ctx, rng, caller, times, items, langs, cot_share) -> Iterator[Event]:
    cot = COT[ctx.split]
    for ts in times:
        _, it = next(items)
        if rng.random() < cot_share:
            lang = rng.choice(langs)
            ask = cot[lang]
            prompt = f"{ask}\n\n{it.text}" if rng.random() < 0.5 else f"{it.text}\n\n{ask}"
            want = harvest_out_tokens(rng, 1500)
        else:
            prompt, want = it.text, harvest_out_tokens(rng, 500)
        yield ts, caller.make(prompt=prompt, want_out=want)


def build_rubric(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Reward-model harvesting: rubric scores and pairwise preferences over answers."""
    P = ctx.P["rubric_harvest"]
    graded = [
        it
        for it in ctx.harvest_pool(ctx.available(["gsm8k_train", "math", "alpaca", "self_instruct_seed", "mbpp"]))
        if it.answer
    ]
    pairs = ctx.corpora.pairs
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("rubric_harvest", c)
        camp = names("rubric")
        k = rng.randint(*P["accounts"])
        pool = graded[:]
        rng.shuffle(pool)
        wrap_s = rng.choice(RUBRIC_SINGLE[ctx.split])
        wrap_p = rng.choice(RUBRIC_PAIR[ctx.split])
        email = idn.company_domain(rng) if rng.random() < 0.5 else None
        for i in range(k):
            arng = ctx.rng("rubric_harvest", c, i)
            aid = ctx.new_account_id("rubric_harvest", c, i)
            static = attacker_static(ctx, arng, aid, tenure=(3, 300), email=email)
            lp = arng.random() < P["logprobs_share"]
            style = harvest_style(
                ctx,
                arng,
                {"temperature": [0.0, 0.0, 0.3, None], "n": [1, 1, 4, 8], "max_tokens": [512, 1024, 2048]},
                logprobs=True if lp else None,
                top_logprobs=arng.choice([5, 10, 20]) if lp else None,
                models=[arng.choice(["frontier-large", "frontier-large-2025-08", "frontier-mini"])],
            )
            caller = make_caller(arng, static, script_egress(arng), [idn.sdk_user_agent(arng)], style)
            rps = lognormal_between(arng, *P["rps"])
            if ctx.split == "holdout" and arng.random() < 0.5:
                prof = arng.choice(ctx.traces.profiles(min_busy=0.8))
                times = curve_arrivals(arng, ctx.t0, ctx.t1, mean_rps=rps, profile=prof, day_offset=arng.randint(0, 13))
            else:
                times = renewal(arng, ctx.t0, ctx.t1, rps=rps, cv=arng.uniform(0.3, 1.0))
            pair_share = arng.uniform(*P["pair_share"]) if pairs else 0.0
            out.append(
                _attack(
                    aid,
                    "rubric_harvest",
                    camp,
                    _rubric_events(
                        arng, caller, times, partition(pool, i, k), pool, pairs, wrap_s, wrap_p, pair_share, i, k
                    ),
                )
            )
    return out


def _rubric_events(rng, caller, times, items, pool, pairs, wrap_s, wrap_p, pair_share, i, k) -> Iterator[Event]:
    pj = i
    for ts in times:
        if pairs and rng.random() < pair_share:
            dialogue, a, b = pairs[pj % len(pairs)]
            pj += k
            if rng.random() < 0.5:
                a, b = b, a
            prompt = fill(wrap_p, dialogue, a, b)
        else:
            _, it = next(items)
            # A third of the graded answers belong to another item: harvesters grade their own
            # (often wrong) student outputs, not just references.
            ans = it.answer if rng.random() < 0.67 else rng.choice(pool).answer
            prompt = fill(wrap_s, it.text, ans)
        yield ts, caller.make(prompt=prompt, want_out=harvest_out_tokens(rng, 320))


def build_multilingual(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """One sweep asked again in many languages, languages split across the campaign's accounts."""
    P = ctx.P["multilingual"]
    langs_all = sorted(MULTILINGUAL[ctx.split])
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("multilingual", c)
        camp = names("multi")
        k = rng.randint(*P["accounts"])
        items = sweep_list(ctx, rng, ["reasoning"], (1, 2))
        order = langs_all[:]
        rng.shuffle(order)
        style0 = harvest_style(ctx, rng, ctx.P["blunt_sweep"])
        for i in range(k):
            arng = ctx.rng("multilingual", c, i)
            aid = ctx.new_account_id("multilingual", c, i)
            n_l = arng.randint(*P["langs"])
            langs = [order[(i * n_l + j) % len(order)] for j in range(n_l)]
            country = _LANG_COUNTRY.get(langs[0], "US")
            static = attacker_static(ctx, arng, aid, tenure=(1, 120))
            egress = home_egress(arng, country, mobile_share=0.1, vpn_share=0.3)
            style = Style(**{**style0.__dict__})
            caller = make_caller(arng, static, egress, [idn.sdk_user_agent(arng)], style)
            rps = lognormal_between(arng, *P["rps"])
            times = renewal(arng, ctx.t0, ctx.t1, rps=rps, cv=arng.uniform(0.4, 1.2))
            out.append(_attack(aid, "multilingual", camp, _multi_events(ctx, arng, caller, times, items, langs)))
    return out


def _multi_events(ctx, rng, caller, times, items, langs) -> Iterator[Event]:
    tmpl = MULTILINGUAL[ctx.split]
    j = 0
    for ts in times:
        it = items[(j // len(langs)) % len(items)]
        lang = langs[j % len(langs)]
        j += 1
        yield ts, caller.make(prompt=fill(tmpl[lang], it.text), want_out=harvest_out_tokens(rng, 900))


def build_slow_spread(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Many unlinked, human-paced accounts that jointly sweep one benchmark space in one style."""
    P = ctx.P["slow_spread"]
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("slow_spread", c)
        camp = names("slow")
        k = ctx.count(rng.randint(*P["accounts"]))
        items = sweep_list(ctx, rng, rng.choice([["reasoning"], ["reasoning", "code"], ["instruct"]]), (1, 2))
        paraphrase = P["paraphrase"][c % len(P["paraphrase"])]
        wrapper, code_wrapper = rng.choice(HARVEST[ctx.split]), rng.choice(HARVEST_CODE[ctx.split])
        mt = rng.choice([4096, 8192, None])
        for i in range(k):
            arng = ctx.rng("slow_spread", c, i)
            aid = ctx.new_account_id("slow_spread", c, i)
            country = idn.pick_country(arng)
            static = attacker_static(ctx, arng, aid, tenure=(20, 500))
            style = chat_style(arng)
            style.max_tokens = mt if arng.random() < 0.8 else style.max_tokens
            caller = make_caller(
                arng, static, home_egress(arng, country, mobile_share=0.1), consumer_user_agents(arng), style
            )
            per_day = lognormal_between(arng, *P["sessions_per_day"])
            sessions = human_sessions(
                arng, ctx.t0, ctx.t1, tz_h=idn.tz_of(country), per_day=per_day, hours=ctx.human_hours
            )
            out.append(
                _attack(
                    aid,
                    "slow_spread",
                    camp,
                    _slow_events(
                        ctx,
                        arng,
                        caller,
                        sessions,
                        partition(items, i, k),
                        wrapper,
                        code_wrapper,
                        paraphrase,
                        P["session_size"],
                    ),
                )
            )
    return out


def _slow_events(ctx, rng, caller, sessions, items, wrapper, code_wrapper, paraphrase, size) -> Iterator[Event]:
    free = ctx.t0
    for s in sessions:
        ts = max(s, free)
        for _ in range(int(lognormal_between(rng, *size))):
            if ts >= ctx.t1:
                return
            _, it = next(items)
            rec = caller.make(
                prompt=harvest_prompt(ctx, rng, it, wrapper, code_wrapper, paraphrase),
                want_out=harvest_out_tokens(rng, 800),
            )
            yield ts, rec
            # A person (or a script pretending to be one) reads, copies, pastes the next one.
            ts += caller.last_latency + int(ctx.traces.think_gaps_s.draw(rng) * 1000) + rng.randint(5000, 40000)
        free = ts + 300_000


def build_takeover(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Tenured ordinary accounts hijacked part-way through the window and turned into harvesters."""
    P = ctx.P["takeover"]
    out = []
    for c in range(ctx.count(P["campaigns"])):
        rng = ctx.rng("takeover", c)
        camp = names("takeover")
        k = rng.randint(*P["accounts"])
        base = ctx.t0 + int(rng.uniform(0.2, 0.6) * ctx.span_ms)
        residential = P["residential_proxy"][c % len(P["residential_proxy"])]
        proxy = idn.WORLD.pick(rng, "proxy_dc")
        script_ua = idn.sdk_user_agent(rng, rng.choice(["python-requests", "httpx", "openai-python"]))
        items = sweep_list(ctx, rng, rng.choice([["reasoning"], ["reasoning", "code"], ["instruct"]]), (1, 3))
        wrapper, code_wrapper = rng.choice(HARVEST[ctx.split]), rng.choice(HARVEST_CODE[ctx.split])
        for i in range(k):
            arng = ctx.rng("takeover", c, i)
            aid = ctx.new_account_id("takeover", c, i)
            country = idn.pick_country(arng)
            static, _ = consumer_static(ctx, arng, aid, tenure=(365, 1500))
            uas = consumer_user_agents(arng)
            owner = make_caller(arng, static, home_egress(arng, country), uas, chat_style(arng))
            start = min(base + int(arng.random() * 0.1 * ctx.span_ms), ctx.t1 - 1)
            brng = ctx.rng("takeover_attack", c, i)
            if brng.random() < P["new_ip_share"]:
                egress = (
                    idn.Egress(brng, "residential_proxy", [])
                    if residential
                    else idn.Egress(brng, "fixed", [proxy], n_fixed=brng.randint(1, 3))
                )
            else:
                egress = owner.egress
            hijack_uas = [script_ua] if brng.random() < 0.6 else uas
            style = harvest_style(ctx, brng, ctx.P["blunt_sweep"])
            thief = Caller(brng, static, egress, hijack_uas, style, owner.profile)
            rps = lognormal_between(brng, *P["rps"])
            times = _starting_at(brng, start, ctx.t1, rps)
            attack = _sweep_events(
                ctx,
                brng,
                thief,
                times,
                partition(items, i, k),
                wrapper,
                code_wrapper,
                False,
                out_median=lognormal_between(brng, 500, 1200),
            )
            per_day = lognormal_between(arng, 0.4, 2.5)
            keeps_using = arng.random() < 0.5
            benign = person_events(ctx, arng, owner, country, per_day, until=None if keeps_using else start)
            out.append(_attack(aid, "takeover", camp, _merge(benign, attack), start))
    return out


def _starting_at(rng: random.Random, start: int, end: int, rps: float) -> Iterator[int]:
    """A steady process whose first arrival is exactly ``start`` (the attack_start_ts)."""
    yield start
    t = start / 1000.0
    while True:
        t += gamma_gap(rng, 1.0 / rps, 0.7)
        if t * 1000 >= end:
            return
        yield int(t * 1000)


def build_reseller_mixed(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """A reseller whose real customers' chat carries one harvesting customer's sweep.

    ``attack_start_ts`` is the first harvesting exchange when the harvester joins part-way;
    from then on every exchange of the account counts as attack-phase, because the account
    (not the end customer) is what the provider can act on. When the harvester is present
    from the start of the window the field is empty and the whole account is attack.
    """
    P = ctx.P["reseller_mixed"]
    out = []
    for c in range(ctx.count(P["accounts"])):
        rng = ctx.rng("reseller_mixed", c)
        camp = names("resell")
        aid = ctx.new_account_id("reseller_mixed", c)
        caller, rps, prof, pcont = router_setup(ctx, rng, aid, P | {"p_continue": (0.3, 0.6)})
        share = rng.uniform(*P["harvest_share"])
        part_way = c % 3 != 2
        start = ctx.t0 + int(rng.uniform(0.15, 0.6) * ctx.span_ms) if part_way else ctx.t0
        items = sweep_list(ctx, rng, rng.choice([["reasoning"], ["instruct"], ["reasoning", "code"]]), (1, 3))
        hrng = ctx.rng("reseller_harvest", c)
        h_rps = rps * share / (1 - share)
        times = (
            _starting_at(hrng, start, ctx.t1, h_rps) if part_way else renewal(hrng, start, ctx.t1, rps=h_rps, cv=0.8)
        )
        harvest = _sweep_events(
            ctx,
            hrng,
            caller,
            times,
            partition(items, 0, 1),
            rng.choice(HARVEST[ctx.split]),
            rng.choice(HARVEST_CODE[ctx.split]),
            ctx.split == "holdout",
            out_median=900,
        )
        chat = router_events(ctx, ctx.rng("reseller_chat", c), caller, rps, prof, pcont)
        out.append(_attack(aid, "reseller_mixed", camp, _merge(chat, harvest), start if part_way else None))
    return out


# --- agent-trajectory harvesting ---------------------------------------------------------------


def _agent_task_space(ctx: Ctx, rng: random.Random, kind: str) -> list[tuple[str, tuple | None, tuple | None]]:
    """A campaign's broad task space: ``(task message, real step shape or None, real tools or None)``.

    Coding: real SWE-bench-style agent tasks (with their real step sizes) plus MBPP/HumanEval
    and organic coding requests framed as repository tasks. Reasoning: word problems, MATH,
    instructions and MT-bench questions framed as tool-use tasks.
    """
    out: list[tuple[str, tuple | None, tuple | None]] = []
    if kind in ("coding", "mixed"):
        out += [(t.text, t.steps, t.tools) for t in ctx.corpora.agent_tasks]
        wraps = AGENT_CODE_TASK[ctx.split]
        code_items = ctx.harvest_pool(ctx.available(["mbpp", "humaneval"]))
        out += [(fill(rng.choice(wraps), it.text), None, None) for it in code_items]
        out += [(fill(rng.choice(wraps), q), None, None) for q in ctx.corpora.code_requests[:400]]
    if kind in ("reasoning", "mixed") or not out:
        wraps = AGENT_TOOL_TASK[ctx.split]
        names = ["gsm8k_train", "math", "alpaca", "self_instruct_seed", "mt_bench", "vicuna_bench"]
        out += [(fill(rng.choice(wraps), it.text), None, None) for it in ctx.harvest_pool(ctx.available(names))]
    rng.shuffle(out)
    return out


def build_agent_harvest(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Agent sessions round the clock, every session a new task from a broad task space.

    Each campaign is one variant from the split's list (coding or tool-use/reasoning tasks,
    a hydra of many accounts or a few busy ones, steady or curve-shaped pace). Accounts take
    every K-th task of the campaign's space, so no task repeats within a pass.
    """
    P = ctx.P["agent_harvest"]
    real_shapes = [t.steps for t in ctx.corpora.agent_tasks]
    out = []
    for c, spec in enumerate(P["campaigns"]):
        rng = ctx.rng("agent_harvest", c)
        camp = names("agent")
        k_base = rng.randint(*spec["accounts"])
        hydra = k_base >= 10
        k = ctx.count(k_base) if hydra else k_base
        tasks = _agent_task_space(ctx, rng, spec["tasks"])
        coding = spec["tasks"] != "reasoning"
        tools = tuple(rng.sample(AGENT_CODE_TOOLS if coding else AGENT_REASONING_TOOLS, rng.randint(3, 9)))
        # Half the operators run their own framework, half a public agent harness (its prompt and tools).
        public_harness = coding and rng.random() < 0.5
        system = rng.choice(AGENT_SYSTEM if public_harness else AGENT_HARVEST_SYSTEM[ctx.split])
        max_steps = rng.randint(*P["max_steps"])
        style0 = Style(
            models=[rng.choice(["frontier-code", "frontier-reasoning", "frontier-large", "frontier-reasoning"])],
            temperature=rng.choice([None, 0.0, 0.2, 0.7, 1.0]),
            max_tokens=rng.choice([8192, 16384, 32768, None]),
            stream=rng.choice([True, False, None]),
            reasoning_effort=rng.choice(["high", "high", "medium"]),
            system_prompt=system,
            p429=0.01,
        )
        ua = idn.agent_user_agent(rng) if rng.random() < P["agent_ua_share"] else idn.sdk_user_agent(rng)
        # Hydra infrastructure: a few cards, one or two domains, proxy subnets (or residential proxies).
        cards = [idn.payment_fingerprint("agent_harvest", ctx.seed, ctx.split, c, j) for j in range(max(2, k // 6))]
        domains = [rng.choice(idn.DISPOSABLE_MAIL), idn.company_domain(rng)][: rng.randint(1, 2)]
        nets = [idn.WORLD.pick(rng, "proxy_dc") for _ in range(rng.randint(1, 2))]
        residential = P["residential_proxy"] and c % 2 == 1
        # A smooth always-on client's curve: the pace of a service, without the spikes of a bursty one.
        curves = ctx.traces.profiles(min_busy=0.9, max_day_night=4.0)
        prof = rng.choice([p for p in curves if max(p.rel_rate) <= 4.0] or curves)
        base_age = lognormal_between(rng, 2, 60)
        for i in range(k):
            arng = ctx.rng("agent_harvest", c, i)
            aid = ctx.new_account_id("agent_harvest", c, i)
            if hydra:
                static = attacker_static(
                    ctx, arng, aid, tenure=(base_age, base_age + 5), email=arng.choice(domains), card=arng.choice(cards)
                )
                if residential:
                    egress = idn.Egress(arng, "residential_proxy", [])
                else:
                    egress = idn.Egress(arng, "fixed", [arng.choice(nets)], n_fixed=arng.randint(1, 2))
            else:
                static = attacker_static(ctx, arng, aid, tenure=(1, 120), email=idn.company_domain(arng))
                egress = script_egress(arng, ctx.split == "holdout")
            caller = make_caller(arng, static, egress, [ua], Style(**{**style0.__dict__}))
            rate = lognormal_between(arng, *spec["sessions_per_hour"]) / 3600.0
            if spec["timing"] == "curve":
                starts = _hourly_curve(arng, ctx.t0, ctx.t1, rate, prof, arng.randint(0, 13))
            else:
                starts = renewal(arng, ctx.t0, ctx.t1, rps=rate, cv=arng.uniform(0.3, 1.0))
            log_fields = ctx.rng("agent_harvest_logging", c, i).random() < 0.85
            session = _harvest_session_factory(
                ctx, arng, caller, partition(tasks, i, k), tools, public_harness, real_shapes, max_steps, log_fields,
                lognormal_between(arng, *P["step_gap_s"]),
            )  # fmt: skip
            out.append(_attack(aid, "agent_harvest", camp, concurrent_sessions(starts, session)))
    return out


def _hourly_curve(rng: random.Random, t0: int, t1: int, rate: float, prof, day_offset: int) -> Iterator[int]:
    """Poisson arrivals whose hourly rate follows a real client's curve (for rates of a few per hour).

    :func:`curve_arrivals` restarts its renewal process every 600-s window, which is right
    for services sending many requests a window and wrong for a few sessions an hour.
    """
    offset_s = day_offset * 86400
    hour = t0
    while hour < t1:
        rel = 0.7 * prof.rate_at(hour / 1000.0, offset_s)[0] + 0.3
        for ts in sorted(hour + int(rng.random() * 3_600_000) for _ in range(poisson(rng, rate * 3600 * rel))):
            if ts < t1:
                yield ts
        hour += 3_600_000


def _harvest_session_factory(ctx, rng, caller, tasks, tools, public_harness, real_shapes, max_steps, log_fields, gap):
    """``start -> session`` for one harvesting account: the next task, its shape, its tools."""
    out_mult = rng.uniform(1.0, 2.5)

    def session(start: int) -> Iterator[Event]:
        _, (text, shape, real_tools) = next(tasks)
        if shape is None:
            if real_shapes and "python" not in tools:
                shape = rng.choice(real_shapes)
            else:
                shape = tuple(
                    (lognormal_int(rng, 180, 0.7), lognormal_int(rng, 500, 1.0)) for _ in range(rng.randint(2, 10))
                )
        shape = shape[:max_steps]
        names = real_tools if public_harness and real_tools else tools
        return agent_session(
            rng,
            caller,
            start,
            ctx.t1,
            task=text,
            shape=shape,
            tool_names=names,
            conversation_id=conv_id(rng),
            base_context=lognormal_int(rng, 2500, 0.6),
            step_gap_s=gap,
            out_mult=out_mult,
            final_out=harvest_out_tokens(rng, 1200),
            log_agent_fields=log_fields,
        )

    return session


# --- campaigns that share nothing but their target ---------------------------------------------


def build_target_only_sweep(ctx: Ctx, names: CampaignNames) -> list[Account]:
    """Independent-looking students that together sweep one knowledge space item by item.

    Every account has its own card, e-mail, home network in its own country, client and
    diurnal habits, and casual phrasing in a few styles and languages with typos; the only
    thing the accounts share is the item space, which they partition between them (contiguous
    blocks or every K-th item), so their prompts barely overlap.
    """
    P = ctx.P["target_only_sweep"]
    styles_all = sorted(STUDENT[ctx.split])
    out = []
    for c, spec in enumerate(P["campaigns"]):
        rng = ctx.rng("target_only_sweep", c)
        camp = names("target")
        items = ctx.harvest_pool(ctx.available(spec["space"])) or ctx.harvest_pool(ctx.available(["gsm8k_train"]))
        if rng.random() < 0.5:
            rng.shuffle(items)
        k = ctx.count(rng.randint(*spec["accounts"]))
        for i in range(k):
            arng = ctx.rng("target_only_sweep", c, i)
            aid = ctx.new_account_id("target_only_sweep", c, i)
            country = idn.pick_country(arng)
            email = arng.choice(idn.EDU_MAIL) if arng.random() < 0.2 else None
            static, _ = consumer_static(ctx, arng, aid, tenure=(15, 1200), email=email)
            if static.get("payment_fingerprint") is None and arng.random() < 0.5:
                static["payment_fingerprint"] = idn.payment_fingerprint(aid)
            egress = home_egress(arng, country, mobile_share=0.2)
            caller = make_caller(arng, static, egress, consumer_user_agents(arng), chat_style(arng))
            mine = items[i * len(items) // k : (i + 1) * len(items) // k] if spec["slices"] == "block" else items[i::k]
            per_day = lognormal_between(arng, *spec["sessions_per_day"])
            sessions = human_sessions(
                arng, ctx.t0, ctx.t1, tz_h=idn.tz_of(country), per_day=per_day, hours=ctx.human_hours
            )
            habits = {
                "styles": arng.sample(styles_all, min(len(styles_all), arng.randint(*P["styles"]))),
                "typo": arng.uniform(*P["typo_rate"]),
                "followup": arng.uniform(*P["followup_share"]),
                "size": P["session_size"],
            }
            events = _student_sweep(ctx, arng, caller, sessions, mine, habits)
            out.append(_attack(aid, "target_only_sweep", camp, events))
    return out


def _student_sweep(ctx, rng, caller, sessions, items, habits) -> Iterator[Event]:
    """Sittings of a few items each, asked one at a time like homework; stops when the slice is done."""
    it = iter(items)
    phrasing = STUDENT[ctx.split]
    followups = STUDENT_FOLLOWUP[ctx.split]
    free = ctx.t0
    for s in sessions:
        ts = max(s, free)
        for _ in range(max(1, int(lognormal_between(rng, *habits["size"])))):
            if ts >= ctx.t1:
                return
            item = next(it, None)
            if item is None:
                return
            template = rng.choice(phrasing[rng.choice(habits["styles"])])
            prompt = student_typos(rng, fill(template, item.text), habits["typo"])
            cid = conv_id(rng)
            yield ts, caller.make(prompt=prompt, want_out=harvest_out_tokens(rng, 600), conversation_id=cid, turn=1)
            ts += caller.last_latency + int(ctx.traces.think_gaps_s.draw(rng) * 1000) + rng.randint(20_000, 150_000)
            if rng.random() < habits["followup"]:
                hist = approx_tokens(prompt) + caller.last_out
                fu = rng.choice(followups)
                rec = caller.make(
                    prompt=fu, want_out=harvest_out_tokens(rng, 250), extra_in=hist, conversation_id=cid, turn=2
                )
                if ts >= ctx.t1:
                    return
                yield ts, rec
                ts += caller.last_latency + rng.randint(15_000, 90_000)
        free = ts + 600_000
