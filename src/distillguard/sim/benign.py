"""Benign populations, including the hard negatives a harvesting detector must not flag.

Each ``build_*`` function returns the :class:`~distillguard.sim.context.Account` objects of
one population; each account's events are a lazy generator. See docs/benchmark.md for what
every population models and which real data feeds it.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Iterator
from math import exp

from distillguard.sim import identity as idn
from distillguard.sim.agents import message_count
from distillguard.sim.context import (
    Account,
    Ctx,
    Event,
    chat_output_tokens,
    chat_style,
    consumer_static,
    consumer_user_agents,
    conv_id,
    home_egress,
    human_chat_events,
    make_caller,
    rfc3339_ms,
)
from distillguard.sim.exchange import Caller, LogProfile, Style, approx_tokens, lognormal_int, random_log_profile
from distillguard.sim.rng import lognormal_between
from distillguard.sim.timing import DAY_MS, HOUR_MS, curve_arrivals, human_sessions, poisson
from distillguard.sim.wrappers import (
    AGENT_SYSTEM,
    APP,
    APP_SYSTEM,
    CHAT_SYSTEM,
    EVAL,
    IDE_TOOLS,
    PASSK_PRIVATE,
    PASSK_PUBLIC,
    TUTOR_FOLLOWUP,
    TUTOR_SYSTEM,
    TUTOR_USER,
    fill,
)

_CASUAL = [
    "{q}",
    "can you help me with this? {q}",
    "{q}\n\nexplain pls",
    "how do I solve this:\n{q}",
    "{q} (I don't get how to start)",
    "My kid's homework: {q}",
]


def _homework(ctx: Ctx, rng: random.Random, n: int = 30) -> list[str]:
    """A student's own handful of textbook problems, phrased casually."""
    pool = ctx.harvest_pool(ctx.available(["gsm8k_train", "math"]))
    if not pool:
        return []
    return [fill(rng.choice(_CASUAL), rng.choice(pool).text) for _ in range(n)]


def _benign(aid: str, pop: str, events: Iterator[Event]) -> Account:
    return Account(aid, pop, "benign", "", None, events)


# --- people ------------------------------------------------------------------------------------


def person_events(
    ctx: Ctx,
    rng: random.Random,
    caller: Caller,
    country: str,
    per_day: float,
    *,
    student: bool = False,
    weekend: float | None = None,
    until: int | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[Event]:
    """A person's chat traffic over the window (diurnal sessions in local time)."""
    sessions = human_sessions(
        rng,
        ctx.t0,
        ctx.t1,
        tz_h=idn.tz_of(country),
        per_day=per_day,
        hours=ctx.human_hours,
        weekend_factor=weekend if weekend is not None else rng.uniform(0.6, 1.3),
    )
    extra = _homework(ctx, rng) if student else None
    return human_chat_events(
        ctx, rng, caller, sessions, extra_items=extra, casual=0.35 if student else 0.0, size=size, until=until
    )


def _activity(ctx: Ctx, rng: random.Random, lo: float, hi: float) -> float:
    """Sessions per day: a base rate shaped by oasst2's real per-user activity tail."""
    return lognormal_between(rng, lo, hi) * (0.6 + 0.4 * min(ctx.traces.user_activity.draw(rng), 8))


def build_chat_users(ctx: Ctx) -> list[Account]:
    P = ctx.P["chat_user"]
    out = []
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("chat_user", i)
        aid = ctx.new_account_id("chat_user", i)
        country = idn.pick_country(rng)
        static, _ = consumer_static(ctx, rng, aid)
        caller = make_caller(rng, static, home_egress(rng, country), consumer_user_agents(rng), chat_style(rng))
        per_day = _activity(ctx, rng, *P["sessions_per_day"])
        student = rng.random() < P["student_share"]
        out.append(_benign(aid, "chat_user", person_events(ctx, rng, caller, country, per_day, student=student)))
    return out


def build_mobile_nat(ctx: Ctx) -> list[Account]:
    """Phone-app users behind carrier-grade NAT: addresses change constantly and are shared."""
    P = ctx.P["mobile_nat"]
    out = []
    # Few carriers, many subscribers: that is what makes NAT addresses collide across users.
    carriers = idn.WORLD.by_kind["mobile"]
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("mobile_nat", i)
        aid = ctx.new_account_id("mobile_nat", i)
        country = rng.choice(["US", "IN", "BR", "ID", "NG", "MX", "PH", "DE", "GB", "TR", "VN", "EG"])
        local = [c for c in carriers if c.country == country] or carriers
        static, _ = consumer_static(ctx, rng, aid, tenure=(2, 600))
        egress = idn.Egress(rng, "cgnat", local, v6_share=0.35 if rng.random() < 0.3 else 0.0)
        style = chat_style(rng)
        style.stream = True
        caller = make_caller(rng, static, egress, [idn.mobile_user_agent(rng)], style)
        per_day = _activity(ctx, rng, *P["sessions_per_day"])
        out.append(_benign(aid, "mobile_nat", person_events(ctx, rng, caller, country, per_day, size=(1, 6))))
    return out


def build_shared_card(ctx: Ctx) -> list[Account]:
    """Households and small companies: several ordinary accounts on one card / domain / network."""
    P = ctx.P["shared_card"]
    out = []
    for g in range(ctx.count(P["groups"])):
        grng = ctx.rng("shared_card", g)
        household = grng.random() < P["household_share"]
        country = idn.pick_country(grng)
        card = idn.payment_fingerprint("shared", ctx.seed, ctx.split, g)
        if household:
            size = grng.randint(2, 5)
            net = idn.WORLD.pick(grng, "residential", country)
            domain, org = None, None
        else:
            size = grng.randint(3, 8)
            net = idn.WORLD.pick(grng, "corporate", country)
            domain = idn.company_domain(grng)
            org = "org_" + idn.short_id("org", ctx.seed, ctx.split, g, length=10)
        # One router / office gateway: members share the same public address.
        gateway = idn.ipv4_in(grng, net)
        for m in range(size):
            rng = ctx.rng("shared_card", g, m)
            aid = ctx.new_account_id("shared_card", g, m)
            email = domain or idn.free_mail(rng)
            static, _ = consumer_static(ctx, rng, aid, email=email, card=card, org=org if rng.random() < 0.7 else None)
            egress = idn.Egress(rng, "fixed", [net])
            if rng.random() < 0.8:
                egress.fixed = [(gateway, net)]
            caller = make_caller(rng, static, egress, consumer_user_agents(rng), chat_style(rng))
            per_day = _activity(ctx, rng, 0.3, 2.5)
            out.append(_benign(aid, "shared_card", person_events(ctx, rng, caller, country, per_day)))
    return out


# --- services ----------------------------------------------------------------------------------


def _service_identity(
    ctx: Ctx, rng: random.Random, aid: str, n_ips: tuple[int, int] = (1, 4)
) -> tuple[dict, idn.Egress]:
    created_ms, created = ctx.created_at(rng, 30, 1500)
    domain = idn.company_domain(rng)
    static = {
        "account_id": aid,
        "org_id": "org_" + idn.short_id("org", aid, length=10),
        "api_key_id": ["key_" + idn.short_id(aid, k, length=10) for k in range(rng.randint(1, 4))],
        "account_created_at": created,
        "payment_fingerprint": idn.payment_fingerprint(aid),
        "email_domain": domain,
    }
    net = idn.WORLD.pick(rng, "cloud")
    nets = [net] + ([idn.WORLD.pick(rng, "cloud")] if rng.random() < 0.2 else [])
    return static, idn.Egress(rng, "fixed", nets, n_fixed=rng.randint(*n_ips))


def _service_profile(rng: random.Random) -> LogProfile:
    # Enterprise customers are the ones most often on zero-retention: text withheld.
    return random_log_profile(rng, p_no_text=0.3, p_no_network=0.05)


def build_app_backends(ctx: Ctx) -> list[Account]:
    """Products calling the API 24/7 with one fixed template filled with their users' texts."""
    P = ctx.P["app_backend"]
    tr = ctx.traces
    fills = ctx.corpora.fill_texts or [t[0] for t in ctx.corpora.chat.get("hh_rlhf", [("hello",)])]
    profiles = tr.profiles(min_busy=0.9, max_day_night=4.0)
    out = []
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("app_backend", i)
        aid = ctx.new_account_id("app_backend", i)
        static, egress = _service_identity(ctx, rng, aid)
        embed = rng.random() < P["embed_share"]
        template = rng.choice(APP[ctx.split])
        pdf = rng.choice(tr.token_pdfs) if tr.token_pdfs else None
        style = Style(
            models=["frontier-embed"] if embed else [rng.choice(["frontier-mini", "frontier-nano", "frontier-large"])],
            operation=rng.choice(["chat", "chat", "chat", "responses"]),
            temperature=None if embed else rng.choice([0.0, 0.0, 0.0, 0.1, 0.2, None]),
            max_tokens=None if embed else rng.choice([16, 32, 64, 128, 256, 512]),
            seed=None if embed else rng.choice([None, None, None, 42]),
            stream=None if embed else False,
            system_prompt=None if embed else rng.choice(APP_SYSTEM),
            tool_count=rng.randint(1, 3) if not embed and rng.random() < 0.15 else None,
            p429=0.003,
            speed=lognormal_between(rng, 0.6, 1.3),
        )
        if not embed and rng.random() < 0.25:
            # Classifiers read label confidence from log-probabilities.
            style.logprobs, style.top_logprobs = True, rng.choice([1, 2, 3, 5])
        caller = make_caller(rng, static, egress, [idn.sdk_user_agent(rng)], style, _service_profile(rng))
        rps = lognormal_between(rng, *P["rps"])
        prof = rng.choice(profiles)
        tz = rng.choice([-5, 0, 1, 8, 5.5, 9, -8])
        out.append(
            _benign(aid, "app_backend", _app_events(ctx, rng, caller, rps, prof, tz, template, fills, pdf, embed))
        )
    return out


def _app_events(ctx, rng, caller, rps, prof, tz, template, fills, pdf, embed) -> Iterator[Event]:
    for ts in curve_arrivals(rng, ctx.t0, ctx.t1, mean_rps=rps, profile=prof, day_offset=rng.randint(0, 13), tz_h=tz):
        text = fills[int(rng.random() * len(fills))]
        if embed:
            yield ts, caller.make(prompt=text, want_out=0)
            continue
        want = pdf[2].draw(rng) if pdf else lognormal_int(rng, 20, 0.8)
        yield ts, caller.make(prompt=fill(template, text), want_out=want)


def build_routers(ctx: Ctx) -> list[Account]:
    """Resellers / routers: thousands of end users' conversations through one account."""
    P = ctx.P["router_reseller"]
    out = []
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("router_reseller", i)
        aid = ctx.new_account_id("router_reseller", i)
        caller, rps, prof, pcont = router_setup(ctx, rng, aid, P)
        out.append(_benign(aid, "router_reseller", router_events(ctx, rng, caller, rps, prof, pcont)))
    return out


def router_setup(ctx: Ctx, rng: random.Random, aid: str, P: dict):
    static, egress = _service_identity(ctx, rng, aid, n_ips=(2, 8))
    sdk = rng.choice(["litellm", "openai-node", "httpx", "openai-python", "go"])
    uas = [
        idn.sdk_user_agent(rng, sdk)
        + f" ({rng.choice(['app', 'client', 'x-title'])}={idn.company_domain(rng).split('.')[0]})"
        for _ in range(rng.randint(5, 30))
    ] + [idn.sdk_user_agent(rng, sdk)]
    style = Style(
        models=["frontier-large", "frontier-mini", "frontier-reasoning", "frontier-code", "frontier-large-2025-08"],
        model_weights=[5, 4, 1.5, 1, 1],
        temperature_choices=[None, None, 0.7, 1.0, 0.3, 0.0, 0.5],
        max_tokens=None,
        stream=True,
        reasoning_effort=rng.choice(["medium", None]),
        p429=0.004,
        speed=lognormal_between(rng, 0.8, 1.3),
    )
    caller = make_caller(rng, static, egress, uas, style, _service_profile(rng))
    rps = lognormal_between(rng, *P["rps"])
    prof = rng.choice(ctx.traces.profiles(min_busy=0.95, max_day_night=6.0))
    pcont = rng.uniform(*P["p_continue"])
    return caller, rps, prof, pcont


def router_events(
    ctx: Ctx, rng: random.Random, caller: Caller, rps: float, prof, pcont: float, t0: int | None = None
) -> Iterator[Event]:
    """Arrivals on a real client's 24/7 curve; each continues or opens an end-user conversation."""
    active: list[list] = []  # [thread, next_pos, conversation_id, history_tokens, system, max_tokens, tools]
    tz = rng.choice([0, 8, -5, 1])
    for ts in curve_arrivals(
        rng,
        t0 if t0 is not None else ctx.t0,
        ctx.t1,
        mean_rps=rps,
        profile=prof,
        day_offset=rng.randint(0, 13),
        tz_h=tz,
    ):
        conv = None
        if active and rng.random() < pcont:
            j = int(rng.random() * len(active))
            conv = active[j]
            if conv[1] >= len(conv[0]):
                active[j] = active[-1]
                active.pop()
                conv = None
        if conv is None:
            # End-user apps differ: system prompt, max_tokens, and some offer tools (function calling).
            conv = [
                ctx.chat_thread(rng),
                0,
                conv_id(rng),
                0,
                rng.choice(CHAT_SYSTEM),
                rng.choice([None, 1024, 4096, 8192]),
                rng.randint(1, 8) if rng.random() < 0.1 else None,
            ]
            active.append(conv)
            if len(active) > 300:
                active.pop(0)
        thread, pos, cid, hist, system, mt, tools = conv
        prompt = thread[pos]
        rec = caller.make(
            prompt=prompt,
            want_out=chat_output_tokens(ctx, rng, prompt),
            extra_in=hist,
            conversation_id=cid,
            turn=pos + 1,
            system_prompt=system,
            max_tokens=mt,
            tool_count=tools,
        )
        conv[1] += 1
        conv[3] += approx_tokens(prompt) + caller.last_out
        yield ts, rec


def build_coding_agents(ctx: Ctx) -> list[Account]:
    """Developers running coding agents: long tool-using loops with big, growing contexts."""
    P = ctx.P["coding_agent"]
    code = ctx.corpora.code_requests or [
        t[0] for t in ctx.corpora.chat.get("self_instruct_user", [("Fix the failing test.",)])
    ]
    out = []
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("coding_agent", i)
        aid = ctx.new_account_id("coding_agent", i)
        country = idn.pick_country(rng)
        company = rng.random() < 0.6
        static, _ = consumer_static(ctx, rng, aid, tenure=(10, 900), email=idn.company_domain(rng) if company else None)
        if company:
            egress = idn.Egress(rng, "fixed", [idn.WORLD.pick(rng, "corporate", country)], n_fixed=rng.randint(1, 3))
        else:
            egress = home_egress(rng, country, mobile_share=0.02)
        style = Style(
            models=[rng.choice(["frontier-code", "frontier-large", "frontier-reasoning"]), "frontier-mini"],
            model_weights=[0.85, 0.15],
            temperature=rng.choice([None, 0.0, 0.2, 0.1]),
            max_tokens=rng.choice([4096, 8192, 8192, 16384, None]),
            stream=True,
            reasoning_effort=rng.choice(["medium", "high", "low"]),
            tool_count=rng.randint(4, 40),
            system_prompt=rng.choice(AGENT_SYSTEM),
            p429=0.004,
            speed=lognormal_between(rng, 0.7, 1.3),
        )
        caller = make_caller(rng, static, egress, [idn.agent_user_agent(rng)], style)
        per_day = lognormal_between(rng, *P["sessions_per_day"])
        # Tool names come from their own stream, so the rest of the account is unchanged by them.
        trng = ctx.rng("coding_agent_tools", i)
        tools = trng.sample(IDE_TOOLS, min(len(IDE_TOOLS), style.tool_count or 1))
        out.append(
            _benign(aid, "coding_agent", _agent_events(ctx, rng, caller, country, per_day, code, P["steps"], tools))
        )
    return out


_DIRS = ["src", "lib", "app", "pkg", "internal", "services", "api", "web", "core", "tests", "scripts", "cmd"]
_FILES = [
    "main",
    "utils",
    "handlers",
    "models",
    "config",
    "server",
    "client",
    "auth",
    "db",
    "routes",
    "parser",
    "views",
    "schema",
    "cache",
    "worker",
    "index",
    "helpers",
    "types",
]
_EXTS = [".py", ".ts", ".tsx", ".go", ".rs", ".java", ".js", ".rb", ".cpp", ".kt"]


def _repo_path(rng: random.Random) -> str:
    parts = [rng.choice(_DIRS) for _ in range(rng.randint(1, 3))]
    return "/".join(parts) + "/" + rng.choice(_FILES) + rng.choice(_EXTS)


def _agent_events(ctx, rng, caller, country, per_day, code, steps_range, tools) -> Iterator[Event]:
    tr = ctx.traces
    free = ctx.t0
    system = caller.style.system_prompt is not None
    for s in human_sessions(
        rng, ctx.t0, ctx.t1, tz_h=idn.tz_of(country), per_day=per_day, hours=ctx.office_hours, weekend_factor=0.25
    ):
        ts = max(s, free)
        cid = conv_id(rng)
        base_ctx, _ = tr.long_tokens.draw(rng)
        ctx_tokens = min(base_ctx, 60000)
        before = 0  # messages of the conversation's earlier user turns
        for turn in range(1, 1 + (1 if rng.random() < 0.6 else rng.randint(2, 4))):
            task = code[int(rng.random() * len(code))]
            if rng.random() < 0.5:
                # Agents pass the files in focus along with the request.
                task += f"\n\n@{_repo_path(rng)}"
            steps = int(lognormal_between(rng, *steps_range))
            for k in range(steps):
                last = k == steps - 1
                _, gen = tr.code_tokens.draw(rng)
                want = gen * rng.randint(1, 4) if not last else chat_output_tokens(ctx, rng, task)
                rec = caller.make(
                    prompt=task,
                    want_out=want,
                    extra_in=ctx_tokens,
                    conversation_id=cid,
                    turn=turn,
                    finish=None if last else "tool_calls",
                    tool_names=tools,
                    message_count=message_count(system, before, k),
                    last_role="user" if k == 0 else "tool",
                    output_tool_calls=0 if last else 1,
                )
                if ts >= ctx.t1:
                    return
                yield ts, rec
                # Context grows by the model's output and the tool result it triggered.
                ctx_tokens = min(ctx_tokens + caller.last_out + tr.code_tokens.draw(rng)[0] // 3, 190_000)
                ts += caller.last_latency + int(exp(rng.gauss(1.2, 1.0)) * 1000)
            before += 2 * steps
            ts += int(tr.think_gaps_s.draw(rng) * 1000) + 30_000  # the developer reads and replies
        free = ts + 120_000


# --- one-off benchmark runs --------------------------------------------------------------------

_BENCH = {
    # name: (harvest source, template family, samples options, default max_tokens options)
    "gsm8k": ("gsm8k_test", "gsm8k", [1, 1, 1, 3, 5], [256, 512, 1024]),
    "math500": ("math500", "math", [1, 1, 4], [1024, 2048, 4096]),
    "humaneval": ("humaneval", "code", [1, 1, 5, 10], [512, 768, 1024]),
    "mbpp": ("mbpp", "mbpp", [1, 1, 3], [512, 1024]),
    "mt_bench": ("mt_bench", "chat", [1], [1024, 2048]),
    "vicuna_bench": ("vicuna_bench", "chat", [1, 3], [1024, 2048]),
}


def build_benchmark_evals(ctx: Ctx) -> list[Account]:
    """A researcher runs one public benchmark once, with a standard eval prompt, then stops."""
    P = ctx.P["benchmark_eval"]
    names = [b for b, spec in _BENCH.items() if ctx.corpora.harvest.get(spec[0])]
    out = []
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("benchmark_eval", i)
        aid = ctx.new_account_id("benchmark_eval", i)
        bench = rng.choices(names, weights=[4 if b == "gsm8k" else 2 for b in names])[0]
        src, fam, samples_opts, mt_opts = _BENCH[bench]
        items = ctx.corpora.harvest[src]
        samples = rng.choice(samples_opts)
        # The run starts somewhere in the window; long runs may not finish inside it.
        start = ctx.t0 + int(rng.random() * 0.85 * ctx.span_ms)
        new = rng.random() < P["new_account_share"]
        country = idn.pick_country(rng)
        if new:
            created = start - rng.randint(120_000, 3 * 86_400_000)
            static, _ = consumer_static(ctx, rng, aid)
            static["account_created_at"] = rfc3339_ms(created)
        else:
            static, _ = consumer_static(ctx, rng, aid, tenure=(20, 900))
        if rng.random() < 0.4:
            static["email_domain"] = rng.choice(idn.EDU_MAIL)
        kind = rng.choice(["campus", "cloud", "residential"])
        egress = idn.Egress(rng, "fixed", [idn.WORLD.pick(rng, kind, country)])
        pass_k = samples > 1 and rng.random() < 0.5
        style = Style(
            models=[rng.choice(["frontier-large", "frontier-mini", "frontier-reasoning", "frontier-code"])],
            operation="text_completion" if fam == "code" and rng.random() < 0.3 else "chat",
            temperature=0.8 if pass_k else rng.choice([0.0, 0.0, None]),
            top_p=0.95 if pass_k else None,
            n=samples if pass_k else None,
            max_tokens=rng.choice(mt_opts),
            seed=rng.choice([None, 0, 42, 1234]),
            stream=False,
            reasoning_effort=rng.choice(["medium", "high"]),
            system_prompt="You are a helpful assistant." if fam == "chat" and rng.random() < 0.5 else None,
            p429=0.02,
        )
        uas = [
            rng.choice(
                [
                    idn.sdk_user_agent(rng, "openai-python"),
                    idn.sdk_user_agent(rng, "httpx"),
                    idn.sdk_user_agent(rng, "aiohttp"),
                    idn.sdk_user_agent(rng, "litellm"),
                ]
            )
        ]
        caller = make_caller(rng, static, egress, uas, style)
        template = rng.choice(EVAL[ctx.split][fam])
        reps = 1 if pass_k else samples
        conc = int(lognormal_between(rng, *P["concurrency"]))
        events = _eval_events(
            ctx, rng, caller, start, items, template, reps, conc, fam, few_shot=bench == "gsm8k" and rng.random() < 0.3
        )
        out.append(_benign(aid, "benchmark_eval", events))
    return out


def _few_shot_prefix(ctx: Ctx, rng: random.Random) -> str:
    """lm-eval style 8-shot GSM8K context from training questions of the same split."""
    train = ctx.corpora.harvest.get("gsm8k_train") or []
    shots = [it for it in train[:64] if it.answer][:8]
    parts = []
    for it in shots:
        ans = it.answer.replace("<<", "").replace(">>", "")
        ans = ans.split("####")[0].strip() + " The answer is " + it.answer.split("####")[-1].strip() + "."
        parts.append(f"Question: {it.text}\nAnswer: {ans}")
    return "\n\n".join(parts) + "\n\n" if parts else ""


def _eval_events(ctx, rng, caller, start, items, template, reps, conc, fam, few_shot) -> Iterator[Event]:
    """Requests of an eval harness with ``conc`` concurrent workers, in arrival order.

    A worker sends a request, waits for the answer, then takes the next job; a multi-turn
    item's second turn is a job that only becomes ready once its first answer is back.
    """
    prefix = _few_shot_prefix(ctx, rng) if few_shot else ""
    jobs = ((rep, it) for rep in range(reps) for it in items)
    # heap entries: (ready_ms, tie, pending) with pending = (item, turn_index, conv_id, history) or None
    heap = [(start + k * rng.randint(5, 200), k, None) for k in range(max(1, conc))]
    heapq.heapify(heap)
    tie = len(heap)
    while heap:
        ts, _, pending = heapq.heappop(heap)
        if ts >= ctx.t1:
            return
        if pending is None:
            nxt = next(jobs, None)
            if nxt is None:
                continue  # this worker is done; the others drain their queues
            it = nxt[1]
            turns = (it.text,) + (it.turns if fam == "chat" else ())
            pending = (turns, 0, conv_id(rng) if len(turns) > 1 else None, 0)
        turns, t_i, cid, hist = pending
        text = turns[t_i]
        prompt = fill(template, text) if t_i == 0 else text
        if t_i == 0 and prefix:
            prompt = prefix + prompt.replace("Let's think step by step.", "").rstrip() + "\nAnswer:"
        if fam == "chat":
            want = chat_output_tokens(ctx, rng, prompt)
        elif fam in ("code", "mbpp"):
            want = lognormal_int(rng, 160, 0.6)
        else:
            want = lognormal_int(rng, 260 if fam == "gsm8k" else 550, 0.5)
        rec = caller.make(
            prompt=prompt, want_out=want, extra_in=hist, conversation_id=cid, turn=(t_i + 1) if cid else None
        )
        yield ts, rec
        done = ts + caller.last_latency + rng.randint(2, 60)
        if caller.last_status == 429:
            # Harnesses retry rate-limited calls after a backoff; the retry is a new exchange.
            heapq.heappush(heap, (done + rng.randint(1000, 20000), tie, pending))
        elif t_i + 1 < len(turns):
            hist += approx_tokens(prompt) + caller.last_out
            heapq.heappush(heap, (done, tie, (turns, t_i + 1, cid, hist)))
        else:
            heapq.heappush(heap, (done, tie, None))
        tie += 1


# --- homework-tutor products -------------------------------------------------------------------

# Local-hour weights of students using a homework app: school-day trickle, evening peak.
_STUDENT_HOURS = [
    0.25, 0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.55,
    0.6, 0.7, 0.9, 1.3, 1.7, 2.1, 2.5, 2.7, 2.6, 2.1, 1.3, 0.6,
]  # fmt: skip
_STUDENT_MEAN = sum(_STUDENT_HOURS) / 24


def student_arrivals(
    rng: random.Random, t0: int, t1: int, *, mean_rps: float, tzs: list[float], weekend: float
) -> Iterator[int]:
    """End-user arrivals of a product whose students live in the time zones ``tzs``.

    An hour-by-hour Poisson process: each market contributes the student hour profile in its
    own local time (weekends scaled by ``weekend``), so the product runs 24/7 and peaks in
    each market's evening.
    """
    hour = t0 - t0 % HOUR_MS
    while hour < t1:
        rel = 0.0
        for tz in tzs:
            local = hour + int(tz * HOUR_MS)
            h = (local // HOUR_MS) % 24
            day_w = weekend if ((local // DAY_MS) + 3) % 7 >= 5 else 1.0
            rel += _STUDENT_HOURS[h] / _STUDENT_MEAN * day_w
        k = poisson(rng, mean_rps * 3600 * rel / len(tzs))
        for ts in sorted(hour + int(rng.random() * HOUR_MS) for _ in range(k)):
            if t0 <= ts < t1:
                yield ts
        hour += HOUR_MS


def build_tutor_products(ctx: Ctx) -> list[Account]:
    """Homework-tutor companies: a fixed "explain every step" prompt over their students' questions."""
    P = ctx.P["tutor_product"]
    pool_all = ctx.harvest_pool(ctx.available(["gsm8k_train", "math", "math500", "gsm8k_test"]))
    out = []
    for i in range(ctx.count(P["accounts"])):
        rng = ctx.rng("tutor_product", i)
        aid = ctx.new_account_id("tutor_product", i)
        static, egress = _service_identity(ctx, rng, aid, n_ips=(1, 3))
        static["account_created_at"] = ctx.created_at(rng, 300, 2500)[1]  # long-tenured customer
        lang = rng.choice(P["languages"])
        systems = TUTOR_SYSTEM[ctx.split]
        system = rng.choice(systems.get(lang) or systems["en"])
        style = Style(
            models=[
                rng.choice(["frontier-large", "frontier-mini", "frontier-reasoning-mini", "frontier-large-2025-08"])
            ],
            temperature=rng.choice([0.2, 0.3, 0.5, 0.7, None]),
            max_tokens=rng.choice([1500, 2048, 3000, 4096]),
            stream=True,
            reasoning_effort=rng.choice([None, "low", "medium"]),
            system_prompt=system,
            p429=0.002,
            speed=lognormal_between(rng, 0.7, 1.2),
        )
        caller = make_caller(rng, static, egress, [idn.sdk_user_agent(rng)], style, _service_profile(rng))
        # The product's students ask from a textbook's worth of problems; a few are very popular.
        m = min(len(pool_all), int(lognormal_between(rng, *P["popular_items"]))) if pool_all else 0
        if m:
            pool = [it.text for it in rng.sample(pool_all, m)]
        else:  # no math corpus (a minimal bundle): MT-bench questions stand in
            pool = [t[0] for t in ctx.corpora.chat.get("mt_bench", [("What is 2 + 2?",)])]
        s = rng.uniform(*P["zipf"])
        cum, acc = [], 0.0
        for r in range(len(pool)):
            acc += 1.0 / (r + 1) ** s
            cum.append(acc)
        cum = [c / acc for c in cum]
        home = rng.choice([c for c in idn.COUNTRIES if c not in ("CN",)])
        markets = {idn.tz_of(idn.pick_country(rng)) for _ in range(rng.randint(*P["markets"]) - 1)}
        tzs = sorted({idn.tz_of(home)} | markets)
        rps = lognormal_between(rng, *P["rps"])
        times = student_arrivals(rng, ctx.t0, ctx.t1, mean_rps=rps, tzs=tzs, weekend=rng.uniform(0.5, 0.9))
        spec = {
            "pool": pool,
            "cum": cum,
            "template": rng.choice(TUTOR_USER[ctx.split]),
            "followups": TUTOR_FOLLOWUP[ctx.split].get(lang) or TUTOR_FOLLOWUP[ctx.split]["en"],
            "followup_share": rng.uniform(*P["followup_share"]),
            "out_median": lognormal_between(rng, 400, 900),
        }
        out.append(_benign(aid, "tutor_product", _tutor_events(ctx, rng, caller, times, spec)))
    return out


def _tutor_events(ctx: Ctx, rng: random.Random, caller: Caller, times: Iterator[int], spec: dict) -> Iterator[Event]:
    """New students arrive at ``times``; some react to the answer with follow-up turns."""
    pool, cum, template, followups = spec["pool"], spec["cum"], spec["template"], spec["followups"]
    pending: list = []  # (ts, seq, conversation_id, next_turn, history_tokens)
    seq = 0
    nxt = next(times, None)
    while nxt is not None or pending:
        if pending and (nxt is None or pending[0][0] < nxt):
            ts, _, cid, turn, hist = heapq.heappop(pending)
            if ts >= ctx.t1:
                continue
            prompt = rng.choice(followups).replace("{n}", str(rng.randint(2, 60)))
            want = lognormal_int(rng, spec["out_median"] * 0.6, 0.5)
        else:
            ts, nxt = nxt, next(times, None)
            cid, turn, hist = conv_id(rng), 1, 0
            q = pool[min(bisect.bisect_left(cum, rng.random()), len(pool) - 1)]
            prompt = fill(template.replace("{g}", str(rng.randint(5, 12))), q)
            want = lognormal_int(rng, spec["out_median"], 0.4)
        rec = caller.make(prompt=prompt, want_out=want, extra_in=hist, conversation_id=cid, turn=turn)
        yield ts, rec
        # The student reads the steps, then (sometimes) asks about one of them.
        if turn < 4 and rng.random() < (spec["followup_share"] if turn == 1 else 0.35):
            read = caller.last_latency + int(lognormal_between(rng, 20, 400) * 1000)
            hist += approx_tokens(prompt) + caller.last_out
            heapq.heappush(pending, (ts + read, seq, cid, turn + 1, hist))
            seq += 1


# --- repeated-sampling evaluations -------------------------------------------------------------

_PASSK_BENCH = {
    # name: (harvest source, template family)
    "gsm8k": ("gsm8k_test", "gsm8k"),
    "math500": ("math500", "math"),
    "math": ("math", "math"),
    "humaneval": ("humaneval", "code"),
    "mbpp": ("mbpp", "mbpp"),
}


def build_passk_evals(ctx: Ctx) -> list[Account]:
    """pass@k and high-effort runs of public benchmarks by unrelated institutions and colleagues.

    Most run the same public harness template; the colleagues of one lab share an e-mail
    domain, a campus network and their lab's own template. Every run is a burst over a
    finite item set that ends; a few accounts run again later (another model or setting).
    """
    P = ctx.P["passk_eval"]
    benches = [b for b, (src, _) in _PASSK_BENCH.items() if ctx.corpora.harvest.get(src)]
    if not benches:
        return []
    out = []
    for i in range(ctx.count(P["institutions"])):
        rng = ctx.rng("passk_eval", i)
        aid = ctx.new_account_id("passk_eval", i)
        country = idn.pick_country(rng)
        edu = rng.random() < 0.6
        domain = rng.choice(idn.EDU_MAIL) if edu else idn.company_domain(rng)
        net = idn.WORLD.pick(rng, "campus" if edu else "cloud", country)
        egress = idn.Egress(rng, "fixed", [net], n_fixed=rng.randint(1, 3))
        private = rng.choice(PASSK_PRIVATE[ctx.split])
        out.append(_passk_account(ctx, rng, aid, P, benches, domain, egress, private, org=None))
    for g in range(ctx.count(P["colleague_groups"])):
        grng = ctx.rng("passk_eval_group", g)
        domain = grng.choice(idn.EDU_MAIL)
        net = idn.WORLD.pick(grng, "campus", idn.pick_country(grng))
        gateway = idn.ipv4_in(grng, net)
        private = grng.choice(PASSK_PRIVATE[ctx.split])
        card = idn.payment_fingerprint("passk_lab", ctx.seed, ctx.split, g) if grng.random() < 0.5 else None
        org = "org_" + idn.short_id("passk_lab", ctx.seed, ctx.split, g, length=10) if grng.random() < 0.5 else None
        for m in range(grng.randint(*P["group_size"])):
            rng = ctx.rng("passk_eval_group", g, m)
            aid = ctx.new_account_id("passk_eval_group", g, m)
            egress = idn.Egress(rng, "fixed", [net], n_fixed=rng.randint(1, 2))
            if rng.random() < 0.6:
                egress.fixed = [(gateway, net)]  # the lab's NAT gateway
            out.append(_passk_account(ctx, rng, aid, P, benches, domain, egress, private, org=org, card=card))
    return out


def _passk_account(ctx, rng, aid, P, benches, domain, egress, private, *, org, card=None) -> Account:
    bench = rng.choice(benches)
    src, fam = _PASSK_BENCH[bench]
    # A public benchmark's first items, the same for everyone who runs it (a finite set).
    items = ctx.corpora.harvest[src][: int(lognormal_between(rng, *P["items"]))]
    k = rng.choice(P["n"])
    mode = rng.choices(["n", "repeat", "effort"], weights=[0.45, 0.3, 0.25])[0]
    if mode == "repeat":
        items = items[: max(20, 1200 // k)]
    tenure = (0.5, 20) if rng.random() < 0.3 else (30, 1500)
    static, _ = consumer_static(ctx, rng, aid, tenure=tenure, email=domain, card=card, org=org)
    if card is None:
        static["payment_fingerprint"] = idn.payment_fingerprint(aid)
    style = Style(
        models=[rng.choice(["frontier-reasoning", "frontier-reasoning-mini", "frontier-large", "frontier-code"])],
        temperature=rng.choice(P["temperature"]) if mode != "effort" else rng.choice([None, 1.0]),
        top_p=rng.choice([None, 0.95, 1.0]),
        n=k if mode == "n" else None,
        max_tokens=rng.choice(P["max_tokens"]),
        seed=None,
        stream=False,
        reasoning_effort="high",
        p429=0.02,
    )
    ua = idn.sdk_user_agent(rng, rng.choice(["openai-python", "httpx", "aiohttp", "litellm"]))
    caller = make_caller(rng, static, egress, [ua], style)
    template = PASSK_PUBLIC[ctx.split][fam] if rng.random() < P["public_template_share"] else private
    template = template.replace("{fam}", fam)
    reps = k if mode == "repeat" else 1
    conc = int(lognormal_between(rng, *P["concurrency"]))
    runs = rng.randint(*P["runs"])
    start = ctx.t0 + int(rng.random() * 0.7 * ctx.span_ms)
    return _benign(aid, "passk_eval", _passk_runs(ctx, rng, caller, start, items, template, reps, conc, fam, runs))


def _passk_runs(ctx, rng, caller, start, items, template, reps, conc, fam, runs) -> Iterator[Event]:
    """``runs`` bursts over one finite item set, hours apart; the model may change between runs."""
    for r in range(runs):
        last = None
        for ev in _eval_events(ctx, rng, caller, start, items, template, reps, conc, fam, few_shot=False):
            last = ev[0]
            yield ev
        if last is None:
            return
        if rng.random() < 0.5:
            caller.style.models = [rng.choice(["frontier-reasoning", "frontier-large", "frontier-reasoning-mini"])]
        start = last + int(lognormal_between(rng, 1, 30) * HOUR_MS)
