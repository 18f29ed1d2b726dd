"""Text normalisation, template frames and the MinHash near-duplicate signature (vectorised).

All functions take and return Polars expressions so that one ``select`` computes every text
signal of a record batch in parallel, without a Python loop over prompts.

MinHash scheme ``dg-minhash-v1`` (what the near-duplicate signature is, so that it can be
recomputed elsewhere): normalise (first ``MINHASH_CHARS`` characters, lower-cased); tokens are the space-separated words, at most
``MINHASH_TOKENS``; ``NUM_PERM`` seeded hash functions, each keeping its minimum over the
tokens; the signature is cut into ``BANDS`` bands of ``ROWS`` values, each band hashed to one
64-bit bucket id (LSH). Two prompts share a band bucket with probability 1-(1-J^ROWS)^BANDS for
Jaccard similarity J (J=0.9 -> 0.97, J=0.5 -> 0.18). The estimator is checked against
datasketch's MinHash in the tests.
"""

from __future__ import annotations

import polars as pl

from . import lexicon

MINHASH_CHARS = 400
MINHASH_TOKENS = 64
BANDS = 3
ROWS = 4
NUM_PERM = BANDS * ROWS
FRAME_CHARS = 48  # a template's fixed head or tail: long enough to be specific
FRAME_MIN_LEN = 2 * FRAME_CHARS + 16  # shorter prompts have no separable variable part
SCHEME = "dg-minhash-v1"
_MIX = [0, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9]


def normalized(col: pl.Expr) -> pl.Expr:
    """Lower-case, digits masked, whitespace collapsed: what template and near-dup hashing see."""
    return (
        col.str.to_lowercase()
        .str.replace_all(r"[0-9]+", "0")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def tokens(prompt: pl.Expr) -> pl.Expr:
    """The MinHash token list: words of the normalised head of the prompt."""
    # Split on spaces of the lower-cased head only: a regex normalisation here costs ~5x the
    # whole MinHash, and case is the variation that matters for near-duplicates.
    return prompt.str.slice(0, MINHASH_CHARS).str.to_lowercase().str.split(" ").list.head(MINHASH_TOKENS)


def band_hashes(toks: pl.Expr) -> list[pl.Expr]:
    """``BANDS`` LSH bucket ids from a token-list column; shared bucket = near-duplicate candidate.

    Each of the ``NUM_PERM`` MinHash values is the minimum of a differently seeded 64-bit hash
    over the token set; a band hashes ``ROWS`` consecutive values into one bucket id.
    """
    mh = [toks.list.eval(pl.element().hash(seed=1000 + k)).list.min() for k in range(NUM_PERM)]
    out = []
    for b in range(BANDS):
        band = mh[b * ROWS]
        for r in range(1, ROWS):
            # Combine by odd-constant multiply + xor: cheap, order-sensitive, 64-bit mixing.
            band = (band * pl.lit(_MIX[r], dtype=pl.UInt64)).xor(mh[b * ROWS + r])
        out.append(pl.when(toks.is_not_null()).then(band).alias(f"b{b}"))
    return out


def frames(prompt: pl.Expr) -> list[pl.Expr]:
    """Head and tail frame hashes; null when the prompt is too short to have a variable middle.

    Frames are lower-cased with digits masked (a template's "Question 12:" and "Question 13:"
    are one frame); whitespace is kept as is, which costs nothing in recall for templates that
    are filled by code.
    """
    long_enough = (prompt.str.len_chars() >= FRAME_MIN_LEN).fill_null(False)
    head = prompt.str.slice(0, FRAME_CHARS).str.to_lowercase().str.replace_all(r"[0-9]", "0")
    tail = prompt.str.tail(FRAME_CHARS).str.to_lowercase().str.replace_all(r"[0-9]", "0")
    return [
        pl.when(long_enough).then(head.hash(seed=5)).alias("h_pre"),
        pl.when(long_enough).then(tail.hash(seed=6)).alias("h_suf"),
    ]


HEAD_CHARS = 2000


def bounded(text: pl.Expr) -> pl.Expr:
    """The head and the tail of a long text: instructions sit before or after the item in
    practice (``{q}`` then "explain every step"), and bounding the scanned length bounds the
    cost of the regexes whatever payload sits in the middle."""
    tail = HEAD_CHARS // 4
    return pl.when(text.str.len_chars() > HEAD_CHARS).then(
        pl.concat_str([text.str.slice(0, HEAD_CHARS - tail), text.str.slice(-tail)], separator="\n")
    ).otherwise(text)


# The intent flags: (column, lexicon, whether the system prompt is read too). Instructions to
# expose reasoning or to grade often sit in the system prompt; the others are about the request.
INTENTS = (
    ("f_reason", lexicon.REASONING_ELICIT, True),
    ("f_maxout", lexicon.OUTPUT_MAXIMIZE, False),
    ("f_rubric", lexicon.RUBRIC, True),
    ("f_exam", lexicon.EXAM_LIKE, False),
    ("f_code", lexicon.CODE_LIKE, False),
    ("f_fmt", lexicon.ANSWER_FORMAT, False),
    ("f_trace", lexicon.TRACE_DEMAND, True),
)
INTENT_COLUMNS = [name for name, _, _ in INTENTS]


def _literals(pattern: str, non_ascii: bool) -> list[str]:
    return [x for x in lexicon.compiled(pattern)[0] if x.isascii() != non_ascii]


def phrase_hits(low_prompt: pl.Expr, low_system: pl.Expr, *, non_ascii: bool = False) -> list[pl.Expr]:
    """Every lexicon phrase found in the prompt (``_hp``) and system prompt (``_hs``), in one
    Aho-Corasick pass per text over the union of all intent lexicons' plain phrases.

    Six scans of the same text become one; ``literal_flags`` then reads these few phrases.
    ``non_ascii`` selects the phrases with non-ASCII characters: those can only occur in texts
    that are not pure ASCII, so the caller runs that pass on those rows only (a multibyte
    phrase set defeats the automaton's byte prefilter and costs ~3x as much).
    """
    lits = {name: _literals(pat, non_ascii) for name, pat, _ in INTENTS}
    union_p = sorted({x for v in lits.values() for x in v})
    union_s = sorted({x for name, _, sys in INTENTS if sys for x in lits[name]})
    return [low_prompt.str.extract_many(union_p, overlapping=True).alias("_hp"),
            low_system.str.extract_many(union_s, overlapping=True).alias("_hs")]


def literal_flags(hits_prompt: pl.Expr, hits_system: pl.Expr, *, non_ascii: bool = False) -> list[pl.Expr]:
    """The plain-phrase part of each intent flag, from the ``phrase_hits`` lists.

    Exact: overlapping matching reports every phrase that occurs in the text, so an intent's
    phrase occurs exactly when it is among the found ones (a set lookup, where a substring
    search over the found phrases would build another automaton per lexicon and call).
    """
    out = []
    for name, pat, sys in INTENTS:
        lits = _literals(pat, non_ascii)
        e = pl.lit(False)
        if lits:
            e = e | hits_prompt.list.eval(pl.element().is_in(lits)).list.any().fill_null(False)
            if sys:
                e = e | hits_system.list.eval(pl.element().is_in(lits)).list.any().fill_null(False)
        out.append(e.alias(name))
    return out


def intent_flags(low_prompt: pl.Expr, low_both: pl.Expr, hits_prompt: pl.Expr, hits_system: pl.Expr) -> list[pl.Expr]:
    """Per-exchange intent signals from the multilingual lexicons (nulls count as False).

    ``low_prompt`` is the lower-cased, ``bounded`` prompt, ``low_both`` the same with the system
    prompt prepended, ``hits_*`` the ``phrase_hits`` columns (ASCII phrases). This covers the
    regex part of every lexicon and its ASCII phrases; the caller ORs in the non-ASCII phrases
    for the rows whose text is not pure ASCII (``lexicon.matches`` is the one-lexicon equivalent).
    """
    lit = {e.meta.output_name(): e for e in literal_flags(hits_prompt, hits_system)}
    out = []
    for name, pattern, sys in INTENTS:
        rest = lexicon.compiled(pattern)[1]
        e = lit[name]
        if rest:
            e = e | (low_both if sys else low_prompt).str.contains(rest).fill_null(False)
        out.append(e.alias(name))
    return out


def bounded_series(text: pl.Series) -> pl.Series:
    """``bounded`` applied to a column, computed on its long rows only (~3 % of prompts): the
    expression evaluates both branches of its ``when`` on every row, which costs more than the
    lower-casing that follows."""
    long = (text.str.len_chars() > HEAD_CHARS).fill_null(False)
    if not long.any():
        return text
    idx = long.arg_true()
    # (``scatter`` writes in place: on a clone, so the caller's series is left as it was.)
    return text.clone().scatter(idx, text.gather(idx).to_frame("t").select(bounded(pl.col("t"))).to_series())


def lowered(bounded_prompt: pl.Expr, bounded_system: pl.Expr) -> list[pl.Expr]:
    """The lower-cased texts that ``intent_flags`` reads (computed once per batch), from the
    ``bounded`` prompt and system prompt."""
    low = bounded_prompt.str.to_lowercase()
    sys_low = bounded_system.str.to_lowercase()
    both = pl.concat_str([sys_low.fill_null(""), low.fill_null("")], separator="\n")
    return [low.alias("_low"), sys_low.alias("_sys"), both.alias("_both")]


def not_ascii(*texts: pl.Expr) -> pl.Expr:
    """True where any of the texts has a non-ASCII character (byte length != char length)."""
    e = pl.lit(False)
    for t in texts:
        e = e | (t.str.len_bytes() != t.str.len_chars()).fill_null(False)
    return e


def script_code(prompt: pl.Expr) -> pl.Expr:
    """Dominant non-Latin script of the prompt's head (0 = Latin/none), for language spread."""
    # One regex finds the first non-Latin letter; classifying that single character is cheap.
    classes = [(name, pat) for name, pat in lexicon.SCRIPTS.items() if name != "latin"]
    any_class = "(" + "|".join(p for _, p in classes) + ")"
    ch = prompt.str.slice(0, 200).str.extract(any_class, 1)
    expr = pl.lit(0, dtype=pl.UInt8)
    for code, (_, pat) in reversed(list(enumerate(classes, start=1))):
        expr = pl.when(ch.str.contains(pat).fill_null(False)).then(pl.lit(code, dtype=pl.UInt8)).otherwise(expr)
    return expr.alias("script")
