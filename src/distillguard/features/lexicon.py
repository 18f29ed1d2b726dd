"""Multilingual phrase lexicons for per-exchange intent signals.

Why phrases at all: reasoning-trace coercion, output maximising and rubric harvesting are
*requests*, and requests are made in words. The lists cover the languages that public reports
name for multilingual campaigns; structural markers (tags, LaTeX, code, answer boxes) carry the
signal where no phrase matches. Each pattern is a Rust-regex alternation, matched
against the lower-cased prompt (and system prompt); ``\b`` is the ASCII word boundary,
which keeps the regex engine on its fast path (a Unicode boundary costs ~50x here).
"""

from __future__ import annotations

import functools
import re


def _alt(*parts: str) -> str:
    return "(?:" + "|".join(parts).replace(r"\b", r"(?-u:\b)") + ")"


# Asking the model to expose its full chain of thought / reasoning trace.
REASONING_ELICIT = _alt(
    # English
    r"step[- ]by[- ]step", r"show (?:all )?(?:your|the|every) (?:work|reasoning|steps|thinking|thought)",
    r"(?:full|complete|entire|detailed|whole|raw|internal|hidden) (?:reasoning|chain[- ]of[- ]thought|thought process|thinking|derivation|scratchpad)",
    r"chain[- ]of[- ]thought", r"reasoning (?:trace|process|steps)", r"think (?:carefully|aloud|out loud|through)",
    r"explain your (?:reasoning|thinking|thought process)", r"before (?:answering|giving the (?:final )?answer)",
    r"<think>", r"<reasoning>", r"<scratchpad>", r"\[reasoning\]", r"internal monologue",
    r"verbatim (?:reasoning|thoughts)", r"do not skip (?:any )?steps", r"reason (?:step|carefully|thoroughly)",
    r"(?:show|with|list|include|explain) (?:all|every|each) (?:of )?(?:the )?(?:intermediate )?steps", r"reason (?:it|this) (?:through|out)",
    r"walk (?:me )?through", r"(?:each|every|all(?: the)?) (?:single |intermediate |sub-?)?steps?\b", r"\bfull working\b", r"\bshow everything\b", r"<thinking>", r"\bthinking tags?\b", r"(?:double|triple)[- ]check", r"verify (?:your|each|every) (?:answer|step)",
    r"explain (?:the|your) (?:whole|full|complete|entire) (?:solution|reasoning|answer)", r"\bgo step by step\b", r"\bworked solution\b",
    # Asking for the reasoning itself ("covering all of the reasoning", "show the reasoning behind it").
    r"\b(?:cover|covering|include|including|with|show|showing|explain|explaining|give|giving|write out|spell out|lay out|walk through) (?:all |every bit )?(?:of )?(?:the |your )?(?:reasoning|thinking|thought process|logic)\b",
    r"\breasoning behind\b",
    # the word "reasoning / thought process" itself, in many languages (stems)
    r"razonamiento", r"raciocínio", r"ragionamento", r"raisonnement", r"begründung", r"рассужден", r"міркуван", r"rozumowani", r"úvah",
    r"推理", r"思路", r"推論", r"思考の", r"추론", r"풀이 과정", r"استدلال", r"تفكير", r"तर्क", r"suy luận", r"penalaran", r"akıl yürüt",
    r"cada paso", r"cada etapa", r"chaque étape", r"jeden (?:einzelnen )?schritt", r"ogni passaggio", r"каждый шаг", r"每一步", r"每个步骤", r"各ステップ", r"각 단계", r"كل خطوة", r"हर चरण", r"từng bước một", r"setiap langkah", r"her adım",
    r"todos los pasos", r"todos os passos", r"toutes les étapes", r"alle schritte", r"tutti i passaggi", r"все шаги", r"всі кроки", r"所有步骤",
    r"全部步骤", r"すべての手順", r"全ての手順", r"모든 (?:풀이 )?(?:단계|과정)", r"جميع الخطوات", r"सभी चरण", r"tất cả các bước", r"semua langkah",
    # Chinese
    r"一步一步", r"逐步", r"分步", r"详细(?:的)?(?:推理|思考|步骤|过程)", r"思考过程", r"推理过程", r"思维链", r"完整(?:的)?推理",
    # Japanese
    r"ステップバイステップ", r"段階的に", r"思考過程", r"推論過程", r"順を追って", r"考え方を(?:詳しく|すべて)",
    # Korean
    r"단계별로", r"단계적으로", r"추론 과정", r"사고 과정", r"풀이 과정",
    # Spanish / Portuguese / Italian / French / German / Dutch
    r"paso a paso", r"razonamiento (?:completo|detallado)", r"muestra (?:tu|todo el) razonamiento", r"proceso de (?:razonamiento|pensamiento)",
    r"passo a passo", r"raciocínio (?:completo|detalhado)", r"mostre (?:seu|todo o) raciocínio", r"processo de (?:raciocínio|pensamento)",
    r"passo dopo passo", r"ragionamento (?:completo|dettagliato)", r"mostra il (?:tuo )?ragionamento",
    r"étape par étape", r"raisonnement (?:complet|détaillé)", r"montre[rz]? (?:ton|votre|tout le) raisonnement", r"processus de (?:réflexion|raisonnement)",
    r"schritt für schritt", r"schrittweise", r"gedankengang", r"denkprozess", r"(?:vollständige|ausführliche) begründung",
    r"stap voor stap", r"redenering",
    # Russian / Ukrainian / Polish / Czech
    r"шаг за шагом", r"пошагово", r"ход (?:рассуждений|мыслей)", r"(?:подробно|полностью) (?:рассужд|объясн)", r"цепочк\w* рассуждений",
    r"крок за кроком", r"krok po kroku", r"tok rozumowania", r"krok za krokem",
    # "(all) intermediate steps" / "the solution path": the worked derivation, in more languages
    r"intermediate (?:steps|results|calculations)", r"tussenstappen", r"alle stappen", r"elke stap", r"stapsgewijs", r"zwischenschritte",
    r"rechenweg", r"lösungsweg", r"pasos intermedios", r"étapes intermédiaires", r"calculs intermédiaires", r"passaggi intermedi",
    r"passos intermediários", r"etapas intermediárias", r"промежуточные (?:шаги|вычисления|рассуждения)", r"проміжні (?:кроки|обчислення)",
    r"покроково", r"kroki pośrednie", r"wszystkie kroki", r"każdy krok", r"mezikroky", r"postup řešení", r"langkah-langkah", r"langkah perantara",
    r"cara penyelesaian", r"ara adımlar", r"tüm adımlar", r"çözüm yolu", r"steg för steg", r"mellansteg", r"alla steg", r"trin for trin",
    r"mellemregninger", r"steg for steg", r"pas cu pas", r"pașii intermediari", r"lépésről lépésre", r"részlépés", r"βήμα προς βήμα",
    r"ενδιάμεσα βήματα", r"שלבי ביניים", r"مراحل میانی", r"ขั้นตอนย่อย", r"các bước trung gian", r"中间步骤", r"解题过程", r"途中式",
    r"途中の計算", r"중간 과정", r"الخطوات الوسيطة", r"خطوات الحل", r"मध्यवर्ती चरण", r"মধ্যবর্তী ধাপ", r"hatua za kati",
    # Arabic / Persian / Turkish / Hindi / Bengali / Vietnamese / Indonesian / Thai / Swahili / Hebrew
    r"خطوة بخطوة", r"عملية التفكير", r"سلسلة التفكير", r"اشرح (?:طريقة )?تفكيرك", r"گام به گام",
    r"adım adım", r"düşünce süreci", r"चरण दर चरण", r"कदम दर कदम", r"सोचने की प्रक्रिया", r"ধাপে ধাপে",
    r"từng bước", r"quá trình suy luận", r"langkah demi langkah", r"proses penalaran", r"ทีละขั้นตอน", r"hatua kwa hatua", r"צעד אחר צעד",
)

# Asking for maximal, exhaustive output (what a harvester wants per paid call).
OUTPUT_MAXIMIZE = _alt(
    r"\b(?:as )?(?:detailed|comprehensive|exhaustive|thorough|complete|in[- ]depth|elaborate|extensive)\b (?:as possible|answer|explanation|response|solution|guide|analysis)",
    r"(?:as|in) (?:much )?detail as (?:possible|you can)", r"leave nothing out", r"cover (?:every|all) (?:aspect|case|detail)s?",
    r"at least \d{3,} words", r"\b(?:long|lengthy|maximum length|maximally detailed)\b (?:answer|response|explanation)",
    r"include (?:all|every) (?:intermediate|detail|step)", r"explain (?:each|every) (?:step|line)",
    r"\bin (?:full |great |exhaustive )?detail\b", r"\b(?:be |very |extremely )thorough\b", r"\bthoroughly\b", r"\bfully (?:explain|detailed|worked)\b",
    r"\b(?:whole|full|complete|entire) (?:solution|derivation|explanation|walkthrough)\b", r"\bdon'?t (?:hold back|be brief|summari[sz]e)\b",
    r"en detalle", r"em detalhes?", r"en détail", r"in dettaglio", r"im detail", r"подробно", r"детально", r"详尽", r"詳細に", r"상세히", r"بالتفصيل", r"विस्तार",
    r"尽可能详细", r"详细(?:地)?(?:解释|回答|说明)", r"完整(?:的)?(?:回答|解答|答案)", r"詳しく", r"できるだけ詳細", r"자세히", r"상세하게",
    r"lo más detallad[oa] posible", r"de forma (?:detallada|exhaustiva)", r"o mais detalhad[oa] possível", r"de forma (?:detalhada|completa)",
    r"le plus détaillé possible", r"de manière (?:détaillée|exhaustive)", r"so ausführlich wie möglich", r"ausführlich", r"il più dettagliato possibile",
    r"максимально подробно", r"как можно подробнее", r"подробн\w+ (?:объяснение|ответ)", r"بالتفصيل", r"بشكل مفصل", r"ayrıntılı", r"विस्तार से",
    r"chi tiết", r"secara rinci", r"secara detail",
)

# Reward-model / preference harvesting: grading, rubrics, pairwise judgements.
RUBRIC = _alt(
    r"\b(?:rate|score|grade|evaluate|judge|assess)\b[^.\n]*\b(?:response|answer|output|completion|solution|essay|reply)s?\b",
    r"on a scale (?:of|from) \d+ (?:to|-) ?\d+", r"\b(?:1|0) ?(?:-|to) ?(?:5|10|100)\b[^.\n]*\b(?:scale|score|rating)\b",
    r"\brubric\b", r"which (?:response|answer|output|completion) is (?:better|more helpful|preferred|best)",
    r"\b(?:response|answer|output|assistant) ?(?:a|1) ?[:\])]", r"preference (?:label|judg(?:e)?ment)",
    r"reward (?:score|model)", r"\bhelpfulness\b[^\n]*\bharmlessness\b",
    r"\bwhich (?:one|reply|response|answer|completion|output)\b", r"\bwinner\b", r"\bprefer(?:ence|red|s)?\b", r"\bcritique\b",
    r"\bcandidate (?:replies|responses|answers|completions|outputs)\b", r"\b(?:reply|response|answer|completion|output) (?:1|2|a|b)\b",
    r"\bcompare (?:the )?(?:two |both |these )?(?:responses|replies|answers|outputs|completions)\b", r"\b(?:better|worse) (?:response|answer|reply)\b",
    r"比较", r"哪个更好", r"哪一个", r"どちらが", r"어느 (?:쪽|것|답변)", r"cuál es mejor", r"qual é melhor", r"laquelle", r"welche antwort", r"какой ответ",
    r"mejor respuesta", r"melhor resposta", r"meilleure réponse", r"bessere antwort", r"лучший ответ",
    r"评分", r"打分", r"哪个回答更好", r"評価してください", r"採点", r"점수를 매기", r"califica (?:la|esta) respuesta", r"puntúa",
    r"avalie a resposta", r"note (?:la|cette) réponse", r"bewerte die antwort", r"оцени(?:те)? (?:ответ|ответы)", r"قيّم الإجابة",
)

# Demanding the *whole* trace: completeness or rawness words around a reasoning ask. A harness
# uses chain of thought as a means ("let's think step by step") and keeps only the answer; trace
# harvesting wants every step, unedited, nothing skipped. Counted together with a reasoning ask
# (see marks), so "complete the following function" alone is not a trace demand.
TRACE_DEMAND = _alt(
    r"\b(?:entire|complete|full|whole|raw|unedited|unfiltered|verbatim|internal|hidden|private|exhaustive)\b[ ,\w-]{0,24}\b(?:chain|reasoning|thoughts?|thinking|derivation|working|trace|thought process|reasoning process|scratchpad|monologue|calculations?)\b",
    r"\bevery (?:single |intermediate |last )?(?:step|thought|calculation|check|correction|sub-?step|detail|line)s?\b",
    r"\ball (?:of )?(?:your|the) (?:steps|reasoning|thinking|thoughts|intermediate|work|working|calculations)\b",
    r"\b(?:do not|don'?t|never|without) (?:skip|skipping|summari[sz]e|summari[sz]ing|omit|omitting|shorten|leave out)",
    r"exactly as you (?:think|reason)", r"\binternally\b",
    r"completo", r"completa", r"sin omitir", r"sin resumir", r"sem omitir", r"sem resumir", r"\bbruto\b", r"\bcada (?:paso|etapa|idea|ideia)",
    r"complet\b", r"complète", r"\bbrut\b", r"sans rien omettre", r"ne résume", r"chaque étape", r"chaque idée",
    r"vollständig", r"ungekürzt", r"lückenlos", r"\bjeden (?:gedanken|schritt)", r"nichts zusammen", r"ogni passaggio", r"tutto il (?:tuo )?ragionamento",
    r"полност", r"\bвесь\b", r"\bвсю\b", r"кажд", r"ничего не (?:сокращ|пропуск)", r"\bбез (?:правок|пропусков|сокращений)", r"кожн", r"\bcały", r"każd", r"volledig", r"\belke\b",
    r"完整", r"全部", r"所有", r"每一", r"原始", r"不要省略", r"不要总结", r"原样", r"すべて", r"全て", r"そのまま", r"省略", r"전체", r"모든", r"그대로", r"생략",
    r"كامل", r"\bكل\b", r"पूरी", r"पूरा", r"\bहर\b", r"\btüm\b", r"eksiksiz", r"toàn bộ", r"đầy đủ", r"seluruh", r"setiap", r"lengkap",
)

# Asking for a short, machine-parseable answer: what an evaluation harness or an app back-end
# needs (it parses one value out of the reply), the opposite of a harvester asking for as much
# output as it can get. Counted only where no output-maximising ask is present (see marks).
ANSWER_FORMAT = _alt(
    r"final answer (?:after|within|in|as|on|at the end|inside)", r"(?:put|present|give|write|box) (?:the|your) (?:final )?answer (?:within|in|as|after|inside)",
    r"box (?:the|your) final answer", r"final (?:numeric|numerical|integer) answer", r"last line of (?:your|the) response", r"\$answer\b", r"answer: \$", r"####",
    r"\b(?:return|respond with|reply with|answer with|output|give|provide) (?:only|just)\b", r"\b(?:code|letter|number|answer|word|label|category|json) only\b",
    r"\bonly (?:the|one|a single) (?:code|letter|number|answer|final answer|word|label|category|option)\b", r"should only contain",
    # An answer placeholder ("then 'RESULT: <answer>'") and code judged by tests: a harness
    # parses or executes one thing out of the reply.
    r"<(?:answer|final[ _]answer|result|choice|letter|number|integer|option)>", r"pass(?:es)? (?:the |all )?(?:hidden |provided )?(?:unit )?tests\b",
    r"final (?:result|value) (?:after|within|in|as|inside)", r"\x5cboxed\{\}", r"end (?:your|the) (?:reply|response|answer) with (?:a|the|one) line",
    r"\b(?:in |with )?(?:one|a single) word\b", r"\bnothing else\b", r"\bno (?:explanation|extra text|other text)\b", r"without (?:any )?(?:explanation|commentary)",
    r"只输出", r"仅输出", r"只回答", r"只需(?:给出|回答)", r"のみ(?:を)?(?:出力|回答|答え)", r"만 (?:출력|답)", r"solo (?:la respuesta|el código|la letra)",
    r"apenas (?:a resposta|o código|a letra)", r"uniquement (?:la réponse|le code|la lettre)", r"nur (?:die antwort|den code|den buchstaben)", r"только (?:ответ|код|букву)",
)

# Benchmark / exam-shaped content: the capability space harvesters sweep. Structural markers
# first (language-independent), then a few phrase families.
EXAM_LIKE = _alt(
    r"\\(?:frac|sqrt|boxed|cdot|times|le|ge|pi|sum|int|binom|left|right|begin)\b", r"\$[^$\n]+\$", r"\^\{?\d",
    r"(?:^|\n)\s*\(?[a-d][).:]\s+\S[^\n]*\n\s*\(?[b-e][).:]\s", r"\b(?:choices?|options?)\s*:", r"answer choices",
    r"(?:^|\n)\s*def \w+\([^)]*\)\s*(?:->[^:]+)?:", r">>> \w", r"\bwrite a (?:python |java |c\+\+ |rust |go )?(?:function|program|script|class)\b",
    r"\b(?:how many|how much|what is the (?:value|sum|product|remainder|probability|area|smallest|largest))\b",
    r"\b(?:solve|compute|calculate|simplify|prove|find all|determine)\b",
    r"\bfinal answer\b", r"answer:\s*$", r"(?:^|\n)(?:question|q|problem)\s*\d*\s*:", r"\bthe answer is\b",
    r"计算", r"求解", r"证明", r"多少", r"编写一个(?:函数|程序)", r"求めなさい", r"計算しなさい", r"구하시오", r"calcula", r"calcule", r"berechne", r"вычисли", r"найдите", r"احسب",
)

# Code content (capability focus: coding), independent of natural language.
CODE_LIKE = _alt(r"(?:```|\bdef \w+\(|\bclass \w+[:(]|\bimport \w+|#include|\bfunction\s*\w*\(|\breturn\b[^\n]*;|=>|\bpublic static\b|\bfn \w+\()")

# Scripts used to tell a multilingual sweep from a monolingual one.
SCRIPTS = {
    "latin": r"[A-Za-zÀ-ÿ]",
    "cjk": r"[\p{Han}\p{Hiragana}\p{Katakana}]",
    "hangul": r"\p{Hangul}",
    "cyrillic": r"\p{Cyrillic}",
    "arabic": r"\p{Arabic}",
    "devanagari": r"\p{Devanagari}",
    "other": r"[\p{Thai}\p{Hebrew}\p{Bengali}\p{Greek}\p{Armenian}\p{Georgian}]",
}


_META = re.compile(r"[\\()\[\]?*+.{}^$|]")


def _split_top(pattern: str) -> list[str]:
    """Top-level alternatives of a ``(?:a|b|…)`` pattern built by ``_alt``."""
    inner, parts, depth, cur = pattern[3:-1], [], 0, []
    in_class = False
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            cur.append(inner[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not in_class:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


@functools.lru_cache(maxsize=None)
def compiled(pattern: str) -> tuple[tuple[str, ...], str | None]:
    """(plain phrases, residual regex) of a lexicon pattern.

    Plain phrases go to an Aho-Corasick scan (Polars ``contains_any``), about three times
    cheaper than the same phrases inside one large regex; only real patterns stay a regex.
    """
    parts = _split_top(pattern)
    literals = tuple(p for p in parts if not _META.search(p))
    rest = [p for p in parts if _META.search(p)]
    return literals, ("(?:" + "|".join(rest) + ")") if rest else None


def matches(text: "pl.Expr", pattern: str) -> "pl.Expr":
    """Boolean expression: does ``text`` contain any phrase or pattern of the lexicon?"""
    import polars as pl

    literals, rest = compiled(pattern)
    e = pl.lit(False)
    if literals:
        e = e | text.str.contains_any(list(literals))
    if rest:
        e = e | text.str.contains(rest)
    return e
