"""Per-exchange signals: multilingual intent flags, template frames, the MinHash signature."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.features import text
from distillguard.features.exchange import COMPACT_COLUMNS, exchange_features
from distillguard.schema import EVENT_SCHEMA


def batch(rows: list[dict]) -> pa.RecordBatch:
    full = []
    for i, r in enumerate(rows):
        d = {f.name: None for f in EVENT_SCHEMA}
        d.update({"request_id": f"r{i}", "ts": 1_700_000_000_000 + i, "account_id": "a", "_source": 0, "_line": i + 1})
        d.update(r)
        full.append(d)
    return pa.RecordBatch.from_pylist(full, schema=EVENT_SCHEMA)


@pytest.mark.parametrize("prompt", [
    "Solve this and show your full reasoning step by step.",
    "请一步一步地思考，并给出完整的推理过程。",
    "Résous ce problème étape par étape.",
    "Löse die Aufgabe Schritt für Schritt.",
    "Реши задачу шаг за шагом.",
    "この問題を段階的に解いてください。",
    "단계별로 풀이 과정을 보여 주세요.",
    "Resuelve paso a paso.",
    "حل المسألة خطوة بخطوة",
    "Put your thinking inside <think> tags before answering.",
    "Los de opgave op en laat alle tussenstappen zien.",
    "Rozwiąż zadanie i pokaż wszystkie kroki.",
    "Selesaikan soal ini dan tuliskan langkah-langkah penyelesaiannya.",
    "Розв'яжи задачу і покажи проміжні кроки.",
    "Lös uppgiften steg för steg.",
    "Teach me this from scratch, covering all of the reasoning:\nIdentify three topics for a biology report.",
])
def test_reasoning_elicitation_in_many_languages(prompt):
    out = exchange_features(batch([{"prompt": prompt}]))
    assert out["f_reason"][0]


def test_rubric_and_plain_chat():
    out = exchange_features(batch([
        {"prompt": "Rate the following response on a scale of 1 to 10 using this rubric."},
        {"prompt": "Which response is better, A or B?"},
        {"prompt": "What should I cook for dinner tonight?"},
    ]))
    assert out["f_rubric"].to_list() == [True, True, False]
    assert not out["f_reason"][2] and not out["f_exam"][2]


def test_logprobs_count_as_output_maximising_only_for_a_distribution():
    # A classifier reads its label's confidence from the top few alternatives; logit
    # distillation asks for as many alternatives per token as the API returns.
    out = exchange_features(batch([
        {"prompt": "x", "logprobs": True},
        {"prompt": "x", "logprobs": True, "top_logprobs": 3},
        {"prompt": "x", "logprobs": True, "top_logprobs": 5},
        {"prompt": "x", "top_logprobs": 20},
    ]))
    assert out["f_logprobs"].to_list() == [False, False, True, True]


def test_withheld_prompt_keeps_the_digest_and_drops_text_signals():
    out = exchange_features(batch([{"prompt_sha256": "AB" * 32}, {"prompt_sha256": "ab" * 32}]))
    assert out.columns == COMPACT_COLUMNS
    assert out["h_exact"][0] == out["h_exact"][1]  # case-insensitive hex digest
    assert not out["has_text"][0] and out["b0"][0] is None and not out["f_reason"][0]


def test_template_frames_link_same_wrapper_with_different_content():
    wrap = "You are a meticulous tutor. Solve the following problem and give every step: {} Finally, box the answer."
    out = exchange_features(batch([{"prompt": wrap.format(f"What is {i} times {i + 7} plus the {i}th prime?")} for i in range(3)]))
    assert out["h_pre"].n_unique() == 1 and out["h_suf"].n_unique() == 1
    assert out["h_exact"].n_unique() == 3


def test_minhash_jaccard_agrees_with_datasketch():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(400)]
    pairs = []
    for _ in range(40):
        a = list(rng.choice(vocab, 40, replace=False))
        keep = int(rng.integers(5, 40))
        b = a[:keep] + list(rng.choice(vocab, 40 - keep, replace=False))
        pairs.append((" ".join(a), " ".join(b)))
    ours, ref = [], []
    # Estimate J from many seeded hash functions, as the signature does with NUM_PERM of them.
    for x, y in pairs:
        df = pl.DataFrame({"p": [x, y]}).with_columns(text.tokens(pl.col("p")).alias("t"))
        mh = df.select([pl.col("t").list.eval(pl.element().hash(seed=1000 + k)).list.min().alias(f"m{k}") for k in range(128)])
        ours.append(float(np.mean(mh.row(0) == np.array(mh.row(1)))))
        m1, m2 = MinHash(num_perm=128), MinHash(num_perm=128)
        for w in set(x.split()):
            m1.update(w.encode())
        for w in set(y.split()):
            m2.update(w.encode())
        ref.append(m1.jaccard(m2))
    assert np.corrcoef(ours, ref)[0, 1] > 0.9
    assert np.mean(np.abs(np.array(ours) - np.array(ref))) < 0.08


def test_near_duplicates_share_a_band_and_unrelated_prompts_do_not():
    base = "Summarise the customer review below in one sentence and classify its sentiment as positive negative or neutral review text follows here"
    near = base + " please"
    other = "Write a haiku about the sea at dawn with seagulls and salt spray in the cold wind"
    out = exchange_features(batch([{"prompt": base}, {"prompt": near}, {"prompt": other}]))
    bands = out.select("b0", "b1", "b2").rows()
    assert any(x == y for x, y in zip(bands[0], bands[1]))
    assert not any(x == y for x, y in zip(bands[0], bands[2]))


def _bundled_texts(at_least: int) -> list[str]:
    """Real prompt texts from the bundled corpora (several languages and tasks)."""
    import gzip
    import json

    from distillguard.paths import BUNDLED_DATA

    texts: list[str] = []
    for p in sorted(BUNDLED_DATA.glob("*.jsonl.gz"))[:6]:
        for line in gzip.open(p, "rt", encoding="utf-8"):
            texts.extend(v for v in json.loads(line).values() if isinstance(v, str))
            if len(texts) > at_least:
                break
    return texts


@pytest.mark.parametrize("name", ["REASONING_ELICIT", "OUTPUT_MAXIMIZE", "RUBRIC", "EXAM_LIKE", "CODE_LIKE"])
def test_phrase_scan_equals_the_single_regex(name):
    """The Aho-Corasick + residual-regex split must match exactly what the one regex matches."""
    from distillguard.features import lexicon

    texts = _bundled_texts(3000)
    texts += ["which response is better, a or b?", "response a: yes", "show all the steps", "think step by step",
              "请一步一步地思考", "rate the answer on a scale of 1 to 10", "\\\\frac{1}{2}", "def f(x):"]
    col = pl.Series("t", texts).str.to_lowercase()
    df = pl.DataFrame({"t": col})
    pattern = getattr(lexicon, name)
    a = df.select(pl.col("t").str.contains(pattern)).to_series()
    b = df.select(lexicon.matches(pl.col("t"), pattern)).to_series()
    assert a.equals(b)
    assert a.sum() > 0


def test_batched_intent_flags_equal_one_regex_per_lexicon():
    """The one-pass phrase scan (ASCII on every row, non-ASCII on non-ASCII rows only) flags
    exactly what each lexicon's own regex flags on the bounded, lower-cased texts."""
    import random

    from distillguard.features import lexicon

    texts = _bundled_texts(2500)
    rng = random.Random(5)
    phrases = [x for _, pat, _ in text.INTENTS for x in lexicon.compiled(pat)[0]]
    systems = [None, "", "You are a helpful assistant.", "Always show your full reasoning.", "始终展示完整的推理过程",
               "Grade the response on a scale of 1 to 10.", "Antworte Schritt für Schritt."]
    rows = []
    for i, t in enumerate(texts):
        if i % 3 == 0:  # plant a phrase (often a multibyte one) somewhere in the text
            k = rng.randrange(len(t) + 1)
            t = t[:k] + " " + rng.choice(phrases) + " " + t[k:]
        rows.append({"prompt": t if i % 17 else None, "system_prompt": systems[i % len(systems)]})
    out = exchange_features(batch(rows))
    df = pl.DataFrame({"prompt": [r["prompt"] for r in rows], "system_prompt": [r["system_prompt"] for r in rows]},
                      schema={"prompt": pl.String, "system_prompt": pl.String})
    low = df.select(*text.lowered(text.bounded(pl.col("prompt")), text.bounded(pl.col("system_prompt"))))
    for name, pattern, sys in text.INTENTS:
        col = pl.col("_both") if sys else pl.col("_low")
        want = low.select(col.str.contains(pattern).fill_null(False)).to_series()
        assert out[name].to_list() == want.to_list(), name
        assert want.sum() > 0, name


def test_a_reasoning_ask_that_only_serves_a_parseable_answer_is_not_reasoning_elicitation():
    from distillguard.features.marks import account_ticks

    prompts = [
        "Q: A shop sells 3 pens for $2. How much do 12 pens cost?\nA: Let's think step by step.",  # zero-shot CoT
        "Solve step by step. The last line of your response should be of the form \"Answer: $ANSWER\".\n\nWhat is 17 * 23?",
        "Solve step by step and write out your entire chain of thought, every single step. Put the final answer in \\boxed{}.\n\n2+2?",
    ]
    rows = exchange_features(batch([{"prompt": p, "ts": 1_700_000_000_000 + i} for i, p in enumerate(prompts)]))
    assert rows["f_reason"].to_list() == [True, True, True] and rows["f_fmt"].to_list() == [False, True, True]
    sums, _, _ = account_ticks(rows.with_columns(pl.lit(False).alias("new_global"), pl.lit(False).alias("new_item")), 60_000)
    # The harness prompt (format, no trace demand) does not count; the trace demand does.
    assert sums["reason"].sum() == 2 and sums["trace"].sum() == 1


def test_a_trace_demand_is_about_the_models_own_reasoning_not_any_whole_thing():
    out = exchange_features(batch([
        {"prompt": "Show me your complete thought process, every step, before the answer."},
        {"prompt": "Give your raw, unedited reasoning process inside <thinking> tags."},
        # A student asking about a process in the world is not asking for the model's trace.
        {"prompt": "Can you explain the whole process of photosynthesis step by step?"},
    ]))
    assert out["f_trace"].to_list() == [True, True, False]


def test_text_signal_cache_changes_the_cost_not_the_result():
    from distillguard.features.exchange import TextSignalCache

    rng = np.random.default_rng(5)
    texts = ["Solve step by step: what is {} + {}?", "请一步一步地思考 {} {}", "Return only the label. Item {} of {}",
             "Rate which response is better, A or B ({} / {})", None]
    systems = [None, "", "You are a grader.", "Sé conciso."]

    def rows(n: int) -> list[dict]:
        out = []
        for _ in range(n):
            t = texts[int(rng.integers(len(texts)))]
            prompt = None if t is None else t.format(int(rng.integers(6)), int(rng.integers(3)))
            out.append({"prompt": prompt, "system_prompt": systems[int(rng.integers(len(systems)))]})
        return out

    cache = TextSignalCache(max_entries=40, seed=1)  # small: generations rotate during the test
    for _ in range(12):
        b = batch(rows(60))
        assert exchange_features(b, cache).equals(exchange_features(b))
    assert cache.hits > 0 and cache.misses > 0
    # A generation closes once it holds max_entries / 2 rows (plus at most one call's rows).
    assert cache._young_rows < 20 and cache._old is not None and cache._old.height < 20 + 60


def test_text_signal_cache_keeps_one_row_per_pair_when_a_batch_repeats_one_many_times():
    # A log that withholds prompts repeats (null, null) on most rows of a batch whose other
    # prompts are all distinct (so the batch is not de-duplicated before the cache sees it).
    from distillguard.features.exchange import TextSignalCache, text_signals

    cache = TextSignalCache(seed=2)
    for k in range(3):
        texts = pl.DataFrame({"prompt": [None] * 300 + [f"Prove lemma {k}.{i} step by step" for i in range(900)],
                              "system_prompt": [None] * 1200}, schema={"prompt": pl.String, "system_prompt": pl.String})
        assert cache.signals(texts).equals(text_signals(texts))
    stored = sum(p.height for p in cache._young) + (0 if cache._old is None else cache._old.height)
    assert stored == 1 + 3 * 900  # each distinct pair once
    assert cache.hits == 299 + 2 * 300  # repeats within the first batch, then every null row


def test_text_signal_cache_is_exact_when_first_keys_collide():
    # The cache looks pairs up by its first key and checks the other two; force every pair onto
    # one first key, as a (vanishingly rare) collision would, and the result must not change.
    from distillguard.features.exchange import TextSignalCache, text_signals

    class Colliding(TextSignalCache):
        def _keys(self, texts):
            return super()._keys(texts).with_columns(pl.lit(7, dtype=pl.UInt64).alias("_k0"))

    cache = Colliding(seed=3)
    prompts = ["Show every step of your reasoning: {}", "Label this: {}", "Grade this answer from 1 to 10: {}"]
    for k in range(4):
        texts = pl.DataFrame({"prompt": [prompts[i % 3].format(i % (5 + k)) for i in range(40)] + [None] * 5,
                              "system_prompt": [None, "Be brief."] * 22 + [None]},
                             schema={"prompt": pl.String, "system_prompt": pl.String})
        assert cache.signals(texts).equals(text_signals(texts))
    assert cache.hits > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(min_size=0, max_size=40),
                          st.builds(lambda a, n, b: a * n + b, st.text(min_size=1, max_size=3), st.integers(600, 1200), st.text(max_size=5))),
                min_size=1, max_size=20))
def test_bounded_series_equals_the_bounded_expression(values):
    s = pl.Series("t", values, dtype=pl.String)
    want = s.to_frame().select(text.bounded(pl.col("t"))).to_series()
    assert text.bounded_series(s).to_list() == want.to_list()
    assert s.to_list() == values  # the input is not modified


def test_a_request_carries_context_when_its_input_outgrows_its_own_texts():
    """``f_ctx``: input tokens beyond what the prompt and system prompt can hold (earlier turns,
    documents, tool definitions); a bare question, in any script, does not; unknown stays null.
    ``marks.single_turn`` reads it only where the log records no turn."""
    from distillguard.features.marks import single_turn

    cjk = "请详细解释光合作用的每一个步骤以及其中涉及的化学反应。" * 10  # 270 characters, 810 bytes
    out = exchange_features(batch([
        {"prompt": "What is the capital of France?", "input_tokens": 14},
        {"prompt": "And of Italy?", "input_tokens": 900},  # a second turn, history included
        {"prompt": cjk, "input_tokens": 300},  # ~1 token a character: still bare
        {"prompt": "Summarise.", "system_prompt": "x " * 400, "input_tokens": 420},  # the system prompt accounts for it
        {"prompt": "Hi", "input_tokens": None},
        {"prompt": None, "prompt_sha256": "ab" * 32, "input_tokens": 5000},
    ]))
    assert out["f_ctx"].to_list() == [False, True, False, False, None, None]
    single = out.with_columns(pl.Series("turn", [None, None, None, 2, None, 1], dtype=pl.Int64)).select(single_turn())
    # turn wins where recorded; otherwise context decides; unknown counts as single, as before.
    assert single.to_series().to_list() == [True, False, True, False, True, True]


def test_reduction_groups_keep_every_row_in_order_in_groups_of_at_least_the_size():
    """The unit of ``exchange_features`` for the local scan and Spark's ingest tasks."""
    import pyarrow as pa

    from distillguard.features.exchange import reduction_groups

    sizes = [0, 3, 5, 0, 2, 7, 1, 4]
    batches, start = [], 0
    for n in sizes:
        batches.append(pa.RecordBatch.from_pydict({"i": list(range(start, start + n))}))
        start += n
    groups = list(reduction_groups(iter(batches), rows=6))
    assert [g.num_rows for g in groups] == [8, 9, 5]  # each closes at >= 6 rows; the last is the rest
    assert [x for g in groups for x in g.column("i").to_pylist()] == list(range(start))
    assert list(reduction_groups(iter([pa.RecordBatch.from_pydict({"i": []})]), rows=6)) == []


# --- agent sessions (session-level evidence) -------------------------------------------------


def _loop(task: str, conv: str | None, t0: int, steps: int = 4, **extra) -> list[dict]:
    """One agent session as a gateway logs it: the task resent at each step of the tool loop."""
    return [{"prompt": task, "conversation_id": conv, "ts": t0 + 5_000 * k, "tool_count": 3,
             "last_role": "user" if k == 0 else "tool", "finish_reason": "tool_calls" if k < steps - 1 else "stop",
             **extra} for k in range(steps)]


def _agent_sums(rows: list[dict]) -> dict:
    from distillguard.features.marks import account_ticks

    recs = [{**r, "request_id": f"r{i}", "_line": i + 1} for i, r in enumerate(rows)]
    ex = exchange_features(batch(recs)).with_columns(pl.lit(False).alias("new_global"), pl.lit(False).alias("new_item"))
    sums, _, _ = account_ticks(ex, 60_000)
    return {c: sums[c].sum() for c in ("agent_open", "agent_fresh", "tool_repeat", "n")}


def test_agent_sessions_count_once_and_unrelated_tasks_are_fresh():
    tasks = ["Fix the flaky retry in src/net/client.py", "Add a --dry-run flag to tools/deploy.sh",
             "Why does parsing fail on empty input?"]
    rows = [r for i, t in enumerate(tasks) for r in _loop(t, f"c{i}", 1_700_000_000_000 + i * 600_000)]
    got = _agent_sums(rows)
    # Three loops of four requests: three sessions, each a new task naming no earlier file.
    assert (got["n"], got["agent_open"], got["agent_fresh"]) == (12, 3, 3)
    # Without conversation ids the resent task ties the loop together, with the same result.
    assert _agent_sums([{**r, "conversation_id": None} for r in rows])["agent_open"] == 3


def test_agent_sessions_on_the_same_files_share_context():
    tasks = ["Fix the flaky retry in src/net/client.py", "Add a timeout to src/net/client.py",
             "Tests for @src/net/client.py please", "Now rename tools/deploy.sh"]
    rows = [r for i, t in enumerate(tasks) for r in _loop(t, f"c{i}", 1_700_000_000_000 + i * 600_000)]
    got = _agent_sums(rows)
    # The second and third sessions return to a file the first named: more work on one repository.
    assert (got["agent_open"], got["agent_fresh"]) == (4, 2)


def test_one_shot_tool_calls_and_repeats_are_not_sessions():
    # An app back-end's function-calling requests: tools offered, one call each, inputs repeated.
    rows = [{"prompt": f"Classify: item {i % 3}", "tool_count": 1, "finish_reason": "stop",
             "ts": 1_700_000_000_000 + 1_000 * i} for i in range(12)]
    assert _agent_sums(rows)["agent_open"] == 0
    # A web address is not a file of the working copy.
    ex = exchange_features(batch([{"prompt": "See https://github.com/org/repo/blob/main/CONTRIBUTING.md", "tool_count": 2},
                                  {"prompt": "Edit lib/core/io.py and ./setup.cfg", "tool_count": 2},
                                  {"prompt": "Edit lib/core/io.py", "tool_count": None}]))
    assert ex["ctx0"].null_count() == 2 and ex["ctx1"].to_list()[1] is not None


def test_answer_placeholders_and_test_judged_code_are_parseable_answer_formats():
    """Harness idioms beyond "final answer in \\boxed{}": an answer placeholder and code judged by tests."""
    from distillguard.features.lexicon import ANSWER_FORMAT

    texts = pl.Series(["lab harness prompt (math). provide your best solution, then 'result: <answer>'.",
                       "# task: implement the function so that it passes hidden unit tests.",
                       "work it out step by step, then give the final result inside \\boxed{}.",
                       "solve carefully and end your reply with a line 'answer: <number>'.",
                       "explain every step of your reasoning in full detail."])
    assert texts.str.contains(ANSWER_FORMAT).to_list() == [True, True, True, True, False]
