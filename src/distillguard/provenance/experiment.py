"""The provenance experiment: teacher -> marked harvest -> students -> test. CPU only, no download.

1. A teacher (:class:`~.ngram.BigramLM`) is trained on real corpora (``shared/data``: Stanford
   Alpaca outputs and GSM8K solutions; the bundled GSM8K subset when the folder is absent).
2. It answers ``harvest_prompts`` prompts twice: with the keyed watermark at decoding (what a
   suspect account is served when its decision directs marking) and without (what anyone else
   gets). Marked answers of the harvesting accounts also carry their canary at ``canary_rate``.
3. Students are trained on the harvest with ``share`` of the answers marked (the rest unmarked),
   for each share; *control* students on unmarked answers to the same prompts, each control from
   a fresh harvest.
4. ``provenance test`` statistics: each student answers ``probe_prompts`` new prompts (API mode;
   the probe's view) and reads watermarked text (reading mode; needs its logits); its canary
   triggers are sent to it. Power = p-values per share; the false-positive rate = the share of
   control runs with p below each nominal level (must be at or below it). Each control run has
   its own key (and its own watermarked reading text): under H0 the key is the only randomness
   the test relies on, and controls scored with one shared key would all err together.

Everything is seeded: the same config gives the same table.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..paths import BUNDLED_DATA, shared_data_dir
from .canary import Canary, canary_for, hit_p_value, weave
from .keys import derive
from .ngram import BigramLM
from .watermark import GreenList, WatermarkLogitsProcessor, score_pairs, score_texts, tokenize_many


@dataclass
class ExperimentConfig:
    teacher_vocab: int = 2000
    student_vocab: int = 2100  # the teacher's tokens plus the canary tags' (a rarer token would be cut)
    interpolation: float = 0.9
    gamma: float = 0.25
    delta: float = 2.0
    harvest_prompts: int = 3000
    response_tokens: int = 80
    shares: tuple[float, ...] = (0.05, 0.2, 1.0)
    harvesters: tuple[str, ...] = ("acct-h1", "acct-h2", "acct-h3")
    bystander: str = "acct-bystander"  # served marks too, never in the harvest: must not be named
    canary_rate: float = 0.05
    canary_tries: int = 5
    probe_prompts: int = 1000
    reading_tokens: int = 100_000
    controls: int = 100
    levels: tuple[float, ...] = (0.05, 0.01, 0.001)
    corpus_limit: int | None = None
    seed: int = 7

    @classmethod
    def small(cls) -> "ExperimentConfig":
        """The CI-sized run (tests): the same models and harvest, two shares and 12 controls (~40 s).
        A smaller harvest or probe leaves the 5 % share's p-value at the mercy of the seed."""
        return cls(shares=(0.05, 1.0), controls=12, reading_tokens=50_000)


def load_corpus(limit: int | None = None) -> tuple[list[str], list[str], str]:
    """(answer texts, prompts, source) from shared/data, else the bundled GSM8K subset."""
    d = shared_data_dir()
    texts: list[str] = []
    prompts: list[str] = []
    if d is not None and (d / "stanford_alpaca" / "alpaca_5000.json.gz").exists() and (d / "gsm8k" / "train.jsonl.gz").exists():
        alpaca = json.loads(gzip.open(d / "stanford_alpaca" / "alpaca_5000.json.gz").read())
        texts += [a["output"] for a in alpaca]
        prompts += [a["instruction"] for a in alpaca]
        gsm = d / "gsm8k" / "train.jsonl.gz"
        source = "shared/data: stanford_alpaca/alpaca_5000, gsm8k/train"
    else:
        gsm = BUNDLED_DATA / "gsm8k__train.jsonl.gz"
        source = "bundled: gsm8k train subset"
    with gzip.open(gsm, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts.append(r["answer"])
            prompts.append(r["question"])
    order = np.random.default_rng(0).permutation(len(texts))  # interleave the corpora before any limit
    texts = [texts[i] for i in order]
    prompts = [prompts[i] for i in order]
    if limit:
        texts, prompts = texts[:limit], prompts[:limit]
    return texts, prompts, source


@dataclass
class _World:
    cfg: ExperimentConfig
    teacher: BigramLM
    green: GreenList
    cdf_marked: np.ndarray
    cdf_plain: np.ndarray
    harvest_prompts: list[str]
    probe_prompts: list[str]
    canaries: dict[str, Canary]
    reading_text: list[str] = field(default_factory=list)


def _keyed(w: _World, key: bytes, key_id: str) -> _World:
    """The world under another key: green lists, watermarked sampler, reading text, canaries."""
    cfg, teacher = w.cfg, w.teacher
    green = GreenList(key, cfg.gamma, key_id)
    cdf_marked = teacher.cdf(WatermarkLogitsProcessor(green, cfg.delta, teacher.hashes))
    rr = np.random.default_rng(int.from_bytes(key[:4], "big"))
    n_read = max(1, cfg.reading_tokens // cfg.response_tokens)
    starts = rr.integers(0, teacher.size, n_read)
    reading = teacher.decode(teacher.generate(starts, cfg.response_tokens, rr, cdf_marked))
    canaries = {a: canary_for(key, a, key_id) for a in (*cfg.harvesters, cfg.bystander)}
    return _World(cfg, teacher, green, cdf_marked, w.cdf_plain, w.harvest_prompts, w.probe_prompts, canaries, reading)


def _answers(w: _World, marked: bool, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    start = w.teacher.start_ids(w.harvest_prompts, rng)
    return w.teacher.decode(w.teacher.generate(start, w.cfg.response_tokens, rng, w.cdf_marked if marked else w.cdf_plain))


def _student(w: _World, texts: list[str]) -> BigramLM:
    return BigramLM.fit(texts, w.cfg.student_vocab, w.cfg.interpolation)


def _test_student(w: _World, s: BigramLM, seed: int, *, dedup_too: bool = False) -> dict:
    cfg = w.cfg
    rng = np.random.default_rng(seed)
    cdf = s.cdf()  # the student's sampling table, built once for its probe answers and canaries
    out = s.decode(s.generate(s.start_ids(w.probe_prompts, rng), cfg.response_tokens, rng, cdf))
    api = score_texts(out, w.green, exclude_texts=w.probe_prompts)
    res = {"api": api.as_dict()}
    if dedup_too:
        res["api_no_dedup"] = score_texts(out, w.green, dedup=False).as_dict()
    # Reading mode: the student reads watermarked text; its top-1 prediction after each token is scored.
    toks = tokenize_many(w.reading_text).explode().drop_nulls().to_list()
    ids = s.ids(toks)
    ids = ids[ids >= 0]
    res["reading"] = score_pairs(s.hashes[ids], s.hashes[s.top1(ids)], w.green).as_dict()
    hits = {}
    for acct, c in w.canaries.items():
        start = np.full(cfg.canary_tries, s.ids([c.trigger.split()[-1]])[0])
        if start[0] < 0:
            hits[acct] = None
            continue
        gens = s.decode(s.generate(start, 8, rng, cdf))
        ps = [p for p in (hit_p_value(c.trigger + " " + g, c) for g in gens) if p is not None]
        hits[acct] = min(ps) if ps else None
    res["canary_hits"] = {a: p for a, p in hits.items() if p is not None}
    return res


def run_experiment(cfg: ExperimentConfig | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Run it; return the config, per-share results, control false-positive rates and timings."""
    cfg = cfg or ExperimentConfig()
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    texts, prompts, source = load_corpus(cfg.corpus_limit)
    teacher = BigramLM.fit(texts, cfg.teacher_vocab, cfg.interpolation)
    rng = np.random.default_rng(cfg.seed)
    pick = rng.permutation(len(prompts))
    n_h = min(cfg.harvest_prompts, len(prompts) // 2)
    base = _World(cfg, teacher, None, None, teacher.cdf(), [prompts[i] for i in pick[:n_h]],  # type: ignore[arg-type]
                  [prompts[i] for i in pick[n_h:n_h + cfg.probe_prompts]], {})
    # The experiment's own mark key; the reading text is the provider's own watermarked text, never harvested.
    w = _keyed(base, derive(b"distillguard provenance experiment", "key", str(cfg.seed)), "experiment")
    green = w.green
    say(f"teacher: {teacher.size} tokens of vocabulary from {len(texts):,} texts ({source})")
    marked = _answers(w, True, cfg.seed + 2)
    plain = _answers(w, False, cfg.seed + 3)
    teacher_marked = score_texts(marked, green).as_dict()
    # Canaries: a keyed share of the harvesters' marked answers (answers are spread over the harvesters).
    cr = np.random.default_rng(cfg.seed + 4)
    canaried = [weave(t, w.canaries[cfg.harvesters[i % len(cfg.harvesters)]]) if cr.random() < cfg.canary_rate else t
                for i, t in enumerate(marked)]
    rows = []
    for share in cfg.shares:
        k = int(round(share * n_h))
        sel = np.random.default_rng(cfg.seed + 5).permutation(n_h)[:k]
        is_marked = np.zeros(n_h, dtype=bool)
        is_marked[sel] = True
        harvest = [canaried[i] if is_marked[i] else plain[i] for i in range(n_h)]
        r = _test_student(w, _student(w, harvest), cfg.seed + 6)
        r.update(share=share, marked_answers=k, canaries_in_training=int(sum(1 for i in sel if canaried[i] is not marked[i])))
        rows.append(r)
        say(f"student {share:.0%} marked: API p={r['api']['p_value']:.3g}, reading p={r['reading']['p_value']:.3g}, "
            f"canaries named: {sorted(r['canary_hits'])}")
    controls = []
    for c in range(cfg.controls):
        wc = _keyed(base, derive(b"distillguard provenance experiment", "control-key", str(cfg.seed), str(c)), f"control-{c}")
        harvest = _answers(wc, False, 10_000 + c)
        controls.append(_test_student(wc, _student(wc, harvest), 20_000 + c, dedup_too=True))
        if (c + 1) % 20 == 0:
            say(f"controls: {c + 1}/{cfg.controls}")
    fpr = {}
    for mode in ("api", "api_no_dedup", "reading"):
        p = np.array([x[mode]["p_value"] for x in controls])
        fpr[mode] = {str(a): float((p < a).mean()) if len(p) else None for a in cfg.levels}
    false_hits = sum(len(x["canary_hits"]) for x in controls)
    return {"config": asdict(cfg), "corpus": source, "teacher_vocab": teacher.size, "teacher_marked_answers": teacher_marked,
            "students": rows, "controls": {"runs": len(controls), "false_positive_rate": fpr,
                                           "canary_false_hits": false_hits,
                                           "min_p_api": min((x["api"]["p_value"] for x in controls), default=None)},
            "seconds": round(time.perf_counter() - t0, 1)}
