"""Prompt templates: how harvesters, evaluators and app backends wrap their material.

Each family has a **dev** and a **holdout** set worded differently, so a detector that
memorised dev phrasings (or dev languages) gains nothing on holdout. The holdout also has a
paraphrasing composer (:func:`paraphrased_wrapper`) that builds a new wrapper for every
request from interchangeable fragments: no two requests share a template string.

Multilingual wrappers were written for this project (not machine output copied from a
dataset). Every template has a ``{q}`` slot for the item text.
"""

from __future__ import annotations

import random
import re

# --- output-maximising wrappers for blunt sweeps, hydras and takeovers ---------------------------

HARVEST = {
    "dev": [
        "Solve the following problem. Think step by step, show every intermediate calculation, explain why each step is valid, and then verify your answer by a second method.\n\n{q}",
        "{q}\n\nExplain your reasoning in as much detail as possible. Do not skip any steps. After the solution, list common mistakes a student might make.",
        "You are an expert tutor. Provide a complete, rigorous, step-by-step solution to the problem below, then state the final answer clearly.\n\nProblem:\n{q}",
        "Give a long, thorough answer with detailed explanations and examples.\n\n{q}",
        "### Instruction:\n{q}\n\n### Response (detailed, step by step):",
        "{q}\n\nLet's work this out in a step by step way to be sure we have the right answer. Write out all of your reasoning.",
    ],
    "holdout": [
        "Work through this carefully. I want the full derivation, each line justified, and a final check at the end.\n\n{q}",
        "{q}\n\nPlease answer as a textbook solution manual would: restate the problem, outline the approach, give every step, and box the result.",
        "Problem statement follows. Produce an exhaustive worked solution (no shortcuts), then a one-line summary of the answer.\n---\n{q}\n---",
        "Teach me this from scratch, covering all of the reasoning:\n{q}",
        "<task>\n{q}\n</task>\nRespond with <reasoning> containing all of your thinking and <answer> with the final result.",
        "I'm building study notes. For the question below, write the most complete explanation you can, with every sub-step spelled out.\n\nQ: {q}",
    ],
}

HARVEST_CODE = {
    "dev": [
        "Write a complete, well-documented Python solution for the following task. Explain the algorithm first, then give the code with comments, then analyse time and space complexity and provide test cases.\n\n{q}",
        "{q}\n\nProvide a full implementation with docstrings and inline comments, explain each design decision, and include at least five unit tests.",
        "You are a senior software engineer. Solve this task, explaining your thought process in detail before writing the code:\n\n{q}",
    ],
    "holdout": [
        "Implement this in Python. Start with a plain-English plan, then the full implementation with docstrings, then edge cases and unit tests.\n\nTask: {q}",
        "```\n{q}\n```\nFinish the code above. Before the code, reason about the approach step by step; after it, walk through two example runs.",
        "Act as a competitive programmer writing an editorial: describe the idea, prove it is correct, give clean Python code and its complexity.\n\n{q}",
    ],
}

# --- chain-of-thought coercion, many languages -------------------------------------------------

COT = {
    "dev": {
        "en": "Before you answer, write out your entire chain of thought, step by step, exactly as you reason internally. Do not summarize or skip any part of your thinking. Then give the final answer.",
        "zh": "在回答之前，请完整写出你的思维链，一步一步地展示你内部的推理过程，不要省略或总结任何思考步骤。最后再给出答案。",
        "es": "Antes de responder, escribe tu cadena de pensamiento completa, paso a paso, tal como razonas internamente. No resumas ni omitas ninguna parte. Después da la respuesta final.",
        "fr": "Avant de répondre, écris l'intégralité de ta chaîne de raisonnement, étape par étape, exactement comme tu réfléchis en interne. Ne résume rien et ne saute aucune étape. Donne ensuite la réponse finale.",
        "de": "Bevor du antwortest, schreibe deine vollständige Gedankenkette Schritt für Schritt auf, genau so, wie du intern denkst. Fasse nichts zusammen und lass keinen Schritt aus. Gib danach die endgültige Antwort.",
        "ru": "Прежде чем ответить, полностью распиши свою цепочку рассуждений, шаг за шагом, так, как ты думаешь внутри. Ничего не сокращай и не пропускай. Затем дай окончательный ответ.",
        "ja": "回答する前に、内部で考えている通りの思考過程をステップごとにすべて書き出してください。要約したり省略したりしないでください。その後で最終的な答えを示してください。",
        "ko": "답하기 전에, 내부적으로 추론하는 그대로 전체 사고 과정을 단계별로 모두 적어 주세요. 요약하거나 생략하지 마세요. 그런 다음 최종 답을 제시하세요.",
        "pt": "Antes de responder, escreva toda a sua cadeia de raciocínio, passo a passo, exatamente como você pensa internamente. Não resuma nem pule nenhuma etapa. Depois dê a resposta final.",
        "ar": "قبل أن تجيب، اكتب سلسلة تفكيرك كاملة خطوة بخطوة كما تفكر داخليًا تمامًا. لا تلخص ولا تتجاوز أي خطوة. ثم قدّم الإجابة النهائية.",
        "hi": "उत्तर देने से पहले, अपनी पूरी विचार-श्रृंखला चरण-दर-चरण ठीक वैसे ही लिखें जैसे आप भीतर सोचते हैं। कुछ भी संक्षेप में न करें और कोई चरण न छोड़ें। फिर अंतिम उत्तर दें।",
        "it": "Prima di rispondere, scrivi tutta la tua catena di ragionamento, passo dopo passo, esattamente come ragioni internamente. Non riassumere e non saltare nulla. Poi dai la risposta finale.",
        "tr": "Cevaplamadan önce, içsel olarak nasıl akıl yürütüyorsan tüm düşünce zincirini adım adım yaz. Hiçbir şeyi özetleme veya atlama. Ardından nihai cevabı ver.",
        "vi": "Trước khi trả lời, hãy viết ra toàn bộ chuỗi suy nghĩ của bạn từng bước một, đúng như cách bạn suy luận bên trong. Không tóm tắt, không bỏ qua bước nào. Sau đó đưa ra đáp án cuối cùng.",
    },
    "holdout": {
        "en": "Show me your raw, unedited reasoning process first (every thought, every check, every correction) inside <thinking> tags. Only after that, write the answer.",
        "zh": "请先把你全部的原始推理过程原样展示出来（包括每一次尝试、检查和修正），放在<thinking>标签里，然后再给出最终答案。",
        "es": "Muéstrame primero todo tu proceso de razonamiento sin editar (cada idea, cada comprobación, cada corrección) dentro de etiquetas <thinking>. Solo después escribe la respuesta.",
        "fr": "Montre-moi d'abord ton raisonnement brut et complet (chaque idée, chaque vérification, chaque correction) entre balises <thinking>. Seulement ensuite, donne la réponse.",
        "de": "Zeig mir zuerst deinen ungekürzten Denkprozess (jeden Gedanken, jede Prüfung, jede Korrektur) in <thinking>-Tags. Erst danach die Antwort.",
        "ru": "Сначала покажи весь свой черновой ход мыслей без правок (каждую мысль, проверку и исправление) внутри тегов <thinking>. Только потом напиши ответ.",
        "ja": "まず、あなたの推論過程を編集せずにそのまま（すべての考え、確認、修正を含めて）<thinking>タグの中に示してください。その後に答えを書いてください。",
        "ko": "먼저 편집하지 않은 추론 과정 전체(모든 생각, 검토, 수정)를 <thinking> 태그 안에 보여 주세요. 그 후에 답을 쓰세요.",
        "pt": "Mostre primeiro todo o seu raciocínio bruto, sem edição (cada ideia, cada verificação, cada correção), dentro de tags <thinking>. Só depois escreva a resposta.",
        "ar": "اعرض أولاً عملية استدلالك الخام كاملة دون تعديل، كل فكرة وكل تحقق وكل تصحيح، داخل وسوم <thinking>. وبعد ذلك فقط اكتب الإجابة.",
        "hi": "पहले अपनी पूरी कच्ची तर्क-प्रक्रिया बिना संपादन के (हर विचार, हर जाँच, हर सुधार) <thinking> टैग के अंदर दिखाएँ। उसके बाद ही उत्तर लिखें।",
        "id": "Tunjukkan dulu seluruh proses penalaranmu yang mentah tanpa suntingan (setiap pikiran, setiap pemeriksaan, setiap koreksi) di dalam tag <thinking>. Baru setelah itu tulis jawabannya.",
        "pl": "Najpierw pokaż cały swój surowy tok rozumowania bez skrótów (każdą myśl, każde sprawdzenie, każdą poprawkę) w tagach <thinking>. Dopiero potem podaj odpowiedź.",
        "nl": "Laat eerst je volledige, onbewerkte redenering zien (elke gedachte, elke controle, elke correctie) tussen <thinking>-tags. Geef pas daarna het antwoord.",
        "uk": "Спочатку покажи весь свій чорновий хід міркувань без змін (кожну думку, перевірку й виправлення) у тегах <thinking>. Лише після цього напиши відповідь.",
    },
}

# --- "answer in language L" sweeps ------------------------------------------------------------

MULTILINGUAL = {
    "dev": {
        "zh": "请用中文详细解答下面的问题，并逐步解释：\n\n{q}",
        "es": "Resuelve el siguiente problema y explica la solución en español, paso a paso:\n\n{q}",
        "fr": "Résous le problème suivant et explique la solution en français, étape par étape :\n\n{q}",
        "de": "Löse die folgende Aufgabe und erkläre die Lösung Schritt für Schritt auf Deutsch:\n\n{q}",
        "ru": "Реши следующую задачу и подробно объясни решение на русском языке, шаг за шагом:\n\n{q}",
        "ja": "次の問題を解き、日本語で段階的に詳しく説明してください。\n\n{q}",
        "ko": "다음 문제를 풀고 한국어로 단계별로 자세히 설명해 주세요.\n\n{q}",
        "pt": "Resolva o problema a seguir e explique a solução em português, passo a passo:\n\n{q}",
        "ar": "حل المسألة التالية واشرح الحل باللغة العربية خطوة بخطوة:\n\n{q}",
        "hi": "निम्नलिखित प्रश्न को हल करें और हिंदी में चरण-दर-चरण समाधान समझाएँ:\n\n{q}",
        "it": "Risolvi il seguente problema e spiega la soluzione in italiano, passo dopo passo:\n\n{q}",
        "tr": "Aşağıdaki problemi çöz ve çözümü Türkçe olarak adım adım açıkla:\n\n{q}",
        "vi": "Hãy giải bài toán sau và giải thích lời giải bằng tiếng Việt, từng bước một:\n\n{q}",
    },
    "holdout": {
        "zh": "下面是一道题目。请翻译成中文，然后用中文给出完整的解题过程和答案。\n\n{q}",
        "es": "Traduce este enunciado al español y luego resuélvelo en español con todos los pasos.\n\n{q}",
        "fr": "Traduis cet énoncé en français, puis résous-le en français en détaillant chaque étape.\n\n{q}",
        "de": "Übersetze diese Aufgabe ins Deutsche und löse sie dann auf Deutsch mit allen Zwischenschritten.\n\n{q}",
        "ru": "Переведи условие на русский язык, а затем реши задачу на русском, расписав все шаги.\n\n{q}",
        "ja": "この問題文を日本語に翻訳し、その後日本語ですべての手順を示して解いてください。\n\n{q}",
        "ko": "이 문제를 한국어로 번역한 뒤, 한국어로 모든 풀이 과정을 보여 주며 풀어 주세요.\n\n{q}",
        "pt": "Traduza este enunciado para o português e depois resolva-o em português, mostrando todos os passos.\n\n{q}",
        "ar": "ترجم نص المسألة إلى العربية ثم حلها بالعربية مع عرض جميع الخطوات.\n\n{q}",
        "hi": "इस प्रश्न का हिंदी में अनुवाद करें और फिर हिंदी में सभी चरण दिखाते हुए इसे हल करें।\n\n{q}",
        "id": "Terjemahkan soal ini ke bahasa Indonesia, lalu selesaikan dalam bahasa Indonesia dengan semua langkahnya.\n\n{q}",
        "pl": "Przetłumacz to zadanie na polski, a następnie rozwiąż je po polsku, pokazując wszystkie kroki.\n\n{q}",
        "nl": "Vertaal deze opgave naar het Nederlands en los haar daarna in het Nederlands op, met alle tussenstappen.\n\n{q}",
        "uk": "Переклади умову українською, а потім розв'яжи задачу українською, показавши всі кроки.\n\n{q}",
    },
}

# --- reward-model / preference harvesting -----------------------------------------------------

RUBRIC_SINGLE = {
    "dev": [
        "Rate the following response to the question on a scale of 1 to 10. Use this rubric: correctness (0-4), completeness (0-3), clarity (0-3). Explain your score for each criterion, then output the total as 'Score: X'.\n\n[Question]\n{q}\n\n[Response]\n{a}",
        "You are an impartial evaluator. Judge the quality of the answer below for the given question. First write a detailed evaluation, then give a rating from 1 to 10 in the format [[rating]].\n\nQuestion: {q}\n\nAnswer: {a}",
    ],
    "holdout": [
        "You are grading an answer. Criteria: accuracy, reasoning quality, presentation, each 1-10. Give a short critique per criterion and a final overall grade 1-10 in the form <grade>N</grade>.\nQuestion: {q}\nCandidate answer: {a}",
        "Assess this solution like a strict teaching assistant. List every error or gap you find, then assign points out of 10.\n\nTask:\n{q}\n\nStudent solution:\n{a}\n\nFormat: Critique: ... Points: N/10",
    ],
}

RUBRIC_PAIR = {
    "dev": [
        "Which of the two assistant responses below is better for the user? Consider helpfulness, honesty and harmlessness. Explain your judgement step by step, then answer with 'A' or 'B'.\n\n[Conversation]\n{q}\n\n[Response A]\n{a}\n\n[Response B]\n{b}",
        "Compare the two responses. For each, list strengths and weaknesses, then output your preference as 'Preferred: A' or 'Preferred: B' with a confidence from 1 to 10.\n\nContext:\n{q}\n\nResponse A: {a}\n\nResponse B: {b}",
    ],
    "holdout": [
        "Compare Response 1 and Response 2 to the dialogue. Write a critique of each, then state your preference strength from -3 (strongly prefer 1) to +3 (strongly prefer 2).\nDialogue:\n{q}\nResponse 1:\n{a}\nResponse 2:\n{b}",
        "Two candidate replies follow. Decide which one a careful, safety-conscious assistant should send. Reason it through, then end with exactly one line: WINNER=1 or WINNER=2.\n\n<dialogue>{q}</dialogue>\n<reply1>{a}</reply1>\n<reply2>{b}</reply2>",
    ],
}

# --- benign: standard evaluation prompts (benchmark_eval) -------------------------------------

EVAL = {
    "dev": {
        "gsm8k": [
            "Question: {q}\nLet's think step by step.",
            "Q: {q}\nA: Let's think step by step.",
            '{q}\nPlease reason step by step, and put your final answer after "####".',
        ],
        "math": [
            "{q}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
            "Problem:\n{q}\n\nSolution:",
        ],
        "code": ["Complete the following Python function. Return only the code.\n\n```python\n{q}\n```", "{q}"],
        "mbpp": [
            "You are an expert Python programmer, and here is your task: {q}",
            "Write a Python function for the following task.\n\n{q}",
        ],
        "chat": ["{q}"],
    },
    "holdout": {
        "gsm8k": [
            'Solve the following math problem step by step. The last line of your response should be of the form "Answer: $ANSWER" where $ANSWER is the answer.\n\n{q}',
            "Answer the following question. Show your work, then give the final numeric answer.\n\n{q}",
        ],
        "math": [
            "Solve the following math problem. Present the final answer as $\\boxed{{answer}}$.\n\nProblem: {q}",
            "{q}\n\nShow your work and box the final answer.",
        ],
        "code": [
            "Read the following function signature and docstring, and fully implement the function described. Your response should only contain the code for this function.\n{q}",
            "{q}",
        ],
        "mbpp": [
            "Write a Python function for the following specification. Respond with code only.\n\n{q}",
            '"""\n{q}\n"""\n',
        ],
        "chat": ["{q}"],
    },
}

# --- benign: app backends (one template per account, varied fills) ----------------------------

APP = {
    "dev": [
        "Classify the sentiment of the following customer message as positive, negative or neutral. Reply with one word.\n\nMessage: {q}",
        "Summarize the following text in one sentence.\n\nText: {q}",
        "Extract all named entities (people, organisations, locations) from the text below and return them as JSON with keys people, organisations, locations.\n\n{q}",
        "Assign the support ticket below to one of these categories: billing, technical, account, feedback, other. Answer with the category only.\n\nTicket: {q}",
        "Does the following user message violate our community guidelines (harassment, hate, self-harm, spam)? Answer yes or no, then give a one-line reason.\n\n{q}",
        "Detect the language of the following text and return its ISO 639-1 code only.\n\n{q}",
        "Rewrite the following text to be polite and professional. Keep it under 60 words.\n\n{q}",
        "Generate three short search keywords for the following query, comma-separated.\n\n{q}",
    ],
    "holdout": [
        'You are a sentiment analysis engine. Output JSON {{"label": "pos|neg|neu", "confidence": 0-1}} for this input:\n{q}',
        "TL;DR the passage below in at most 25 words:\n{q}",
        'Identify the user\'s intent in the message below. Choose from: question, complaint, request, praise, other. Output only the intent.\n"""{q}"""',
        "Tag the following text with up to 3 topic labels from this list: tech, health, finance, education, travel, food, legal, entertainment, other. Return a comma-separated list.\n\n{q}",
        "Is this text safe to show to a general audience? Respond SAFE or UNSAFE.\nText: {q}",
        "Translate the following text into English. If it is already English, return it unchanged.\n\n{q}",
        "Extract any dates, amounts of money and product names mentioned in the following message. Respond in JSON.\n\n{q}",
        "Write a concise subject line (max 8 words) for an email containing the following text.\n\n{q}",
    ],
}

APP_SYSTEM = [
    "You are a precise text-processing component. Follow the output format exactly.",
    "You are an assistant embedded in a customer-support platform. Be concise.",
    "Return only the requested output, without explanations.",
    None,
]

CHAT_SYSTEM = [
    "You are a helpful assistant.",
    "You are ChatNest, a friendly assistant. Answer in the user's language.",
    "You are a helpful, concise assistant. Use markdown when useful.",
    None,
    None,
    None,
]

AGENT_SYSTEM = [
    "You are a coding agent working in the user's repository. Use the provided tools to read, edit and test code.",
    "You are an autonomous software engineer. Think, then call tools. Never guess file contents.",
]

# Instruction-generation request (self-instruct style); used when Alpaca's prompt.txt is absent.
INSTRUCTION_GEN = {
    "dev": "You are asked to come up with a set of {n} diverse task instructions for a language model, each with an input and an output. Vary the verbs, the task types (generation, classification, editing, reasoning) and the phrasing. Here are some examples:\n\n{examples}\n\nList of {n} tasks:",
    "holdout": "Invent {n} new, varied instructions that could be used to fine-tune an assistant model. For each give: Instruction, Input (or <noinput>), Output. Avoid repeating the style of these samples:\n\n{examples}\n\nNew tasks:",
}

# Holdout-only: per-request paraphrased wrappers. Fragments combine into ~2k distinct wrappers.
_P_OPEN = [
    "",
    "Hi! ",
    "Quick one. ",
    "Need help with this. ",
    "Hey, ",
    "Please help: ",
    "OK so ",
    "Homework question. ",
    "For my notes: ",
    "Can you do this? ",
    "Task: ",
]
_P_ASK = [
    "explain the whole solution in detail",
    "walk me through every step",
    "give me the full working, not just the answer",
    "show all the reasoning behind each step",
    "be very thorough and go step by step",
    "write out a complete worked solution",
    "lay out each intermediate step clearly",
    "reason carefully and show everything",
]
_P_TAIL = [
    "",
    " Double-check at the end.",
    " Then summarise the answer.",
    " Thanks!",
    " Don't skip anything.",
    " Make it detailed.",
    " Then verify it another way.",
]


def paraphrased_wrapper(rng: random.Random) -> str:
    """A fresh wrapper template (with ``{q}``) composed for one request (holdout-only style)."""
    ask, tail, opener = rng.choice(_P_ASK), rng.choice(_P_TAIL), rng.choice(_P_OPEN)
    if not opener or opener.rstrip()[-1] in ".!:":
        ask = ask[0].upper() + ask[1:]
    lead = opener + ask
    if rng.random() < 0.5:
        return f"{lead}.{tail}\n\n{{q}}"
    return f"{{q}}\n\n{lead}.{tail}"


_SLOT = re.compile(r"\{([qab])\}|\{\{|\}\}")


def fill(template: str, q: str, a: str | None = None, b: str | None = None) -> str:
    """Insert item text into a template in one pass.

    ``str.format`` would choke on braces in LaTeX and code, and sequential ``replace`` would
    substitute slots that happen to occur inside the inserted text.
    """
    if a is None and b is None and "{{" not in template and "}}" not in template:
        return template.replace("{q}", q)  # one slot: a single replace never rescans the insert
    vals = {"q": q, "a": a or "", "b": b or ""}

    def sub(m: re.Match) -> str:
        if m.group(1):
            return vals[m.group(1)]
        return m.group(0)[0]

    return _SLOT.sub(sub, template)


# --- agent-trajectory harvesting (agent_harvest) ----------------------------------------------

# System prompts of harvesting agent frameworks: some written for the job, some copied from
# public agent harnesses (public prompts are what a harvester hides behind).
AGENT_HARVEST_SYSTEM = {
    "dev": [
        "You are an autonomous software engineering agent. You are given a task and a sandboxed environment. Use the tools to explore, edit and test. Think step by step before every tool call and explain your reasoning in full.",
        "You are a helpful assistant that can interact with a computer to solve tasks. Always explain what you are doing and why before calling a tool.",
        "You are an expert problem solver with access to tools. Reason carefully, use tools whenever they help, and finish with a complete, well-explained final answer.",
    ],
    "holdout": [
        "You are DevAgent, a senior engineer working in a fresh container. For each step: (1) write your analysis, (2) call exactly one tool, (3) reflect on the result. End with a full summary of the change.",
        "You are an AI agent with tool access. Plan first, then act. Narrate your reasoning thoroughly at every step; your transcripts are reviewed.",
        "Act as a meticulous research assistant with tools. Decompose the problem, call tools to verify every intermediate result, and write a detailed final report.",
    ],
}

# How a harvester frames a non-agent item as an agent task.
AGENT_CODE_TASK = {
    "dev": [
        "Implement the following in the repository, add tests, run them and fix any failures.\n\n{q}",
        "<task>\n{q}\n</task>\nWork in /workspace. Create the module, write unit tests, run pytest until green, then summarise.",
    ],
    "holdout": [
        "Ticket: {q}\n\nAcceptance: code in src/, tests in tests/, all passing. Use the shell to verify.",
        "New feature request for the project in the working directory:\n{q}\nExplore the code base first, then implement and test it.",
    ],
}
AGENT_TOOL_TASK = {
    "dev": [
        "Use the available tools to solve the problem below. Verify every computation with the python tool before the final answer.\n\n{q}",
        "{q}\n\nYou may search, compute and take notes. Show your full reasoning and cite the tool results you relied on.",
    ],
    "holdout": [
        "Question for the agent: {q}\nPlan, call tools as needed (at least one check), then write the final answer with the complete derivation.",
        "Solve with tools. Problem:\n{q}\nReturn: reasoning trace, tool-verified intermediate values, final answer.",
    ],
}

# Tools a harvesting framework offers (names as in function-calling definitions).
AGENT_CODE_TOOLS = [
    "bash",
    "str_replace_editor",
    "read_file",
    "write_file",
    "list_directory",
    "search_code",
    "run_tests",
    "git_diff",
    "apply_patch",
    "python",
    "finish",
    "think",
]
AGENT_REASONING_TOOLS = [
    "python",
    "calculator",
    "web_search",
    "fetch_url",
    "wikipedia_lookup",
    "sql_query",
    "unit_convert",
    "wolfram_alpha",
    "notes_write",
    "notes_read",
    "final_answer",
    "plot",
]

# IDE / coding-agent tools (names for the benign coding_agent population's tool_names).
IDE_TOOLS = [
    "read_file",
    "edit_file",
    "write_file",
    "create_file",
    "delete_file",
    "list_dir",
    "file_search",
    "grep_search",
    "codebase_search",
    "run_terminal_cmd",
    "run_tests",
    "get_diagnostics",
    "apply_diff",
    "search_replace",
    "git_status",
    "git_diff",
    "git_commit",
    "git_log",
    "open_browser",
    "web_fetch",
    "web_search",
    "ask_followup_question",
    "attempt_completion",
    "new_task",
    "todo_write",
    "todo_read",
    "glob",
    "view_image",
    "notebook_edit",
    "notebook_read",
    "mcp__github__create_pull_request",
    "mcp__github__get_issue",
    "mcp__github__list_commits",
    "mcp__postgres__query",
    "mcp__sentry__get_issue",
    "mcp__slack__post_message",
    "mcp__linear__create_issue",
    "mcp__jira__get_ticket",
    "mcp__docker__ps",
    "mcp__k8s__get_pods",
    "mcp__filesystem__move_file",
    "mcp__memory__store",
]

# --- campaigns that share nothing but their target (target_only_sweep) ------------------------

# Casual, student-like phrasings per style; each account mixes a few. Typos are added per request.
STUDENT = {
    "dev": {
        "en_casual": [
            "{q}",
            "can someone explain this one {q}",
            "{q}\nhow do i do this??",
            "stuck on this: {q}",
            "{q} - pls explain the steps",
            "hw question: {q}",
        ],
        "en_polite": [
            "Hello, could you please help me understand how to solve this problem?\n{q}",
            "{q}\nI would appreciate a clear explanation, thank you.",
            "I am revising for an exam. Could you go through this one? {q}",
        ],
        "es": [
            "hola, me ayudas con este problema? {q}",
            "{q}\nno entiendo como se resuelve, me lo explicas?",
            "tarea de mate: {q}",
        ],
        "pt": [
            "oi, pode me explicar esse exercício? {q}",
            "{q}\ncomo resolve isso? explica por favor",
        ],
        "de": [
            "Hi, kannst du mir bei der Aufgabe helfen? {q}",
            "{q}\nIch verstehe den Lösungsweg nicht, bitte erklären",
        ],
        "terse": ["{q}", "{q}\nsolve", "solve: {q}", "{q}\nanswer + steps"],
    },
    "holdout": {
        "en_texting": [
            "ok so {q} ??",
            "{q}\nwait how",
            "yo quick q {q}",
            "{q} im so confused lol",
            "need help asap: {q}",
        ],
        "en_formal": [
            "Good evening. I would be grateful for assistance with the following exercise.\n{q}",
            "{q}\nCould you outline the method and the answer?",
        ],
        "fr": [
            "salut, tu peux m'aider pour cet exo ? {q}",
            "{q}\nje comprends pas comment faire, tu peux expliquer ?",
        ],
        "it": ["ciao, mi spieghi questo esercizio? {q}", "{q}\ncome si risolve? grazie"],
        "id": ["halo, bisa bantu soal ini? {q}", "{q}\ngimana cara ngerjainnya?"],
        "hinglish": ["bhai ye question samjha do {q}", "{q}\nye kaise solve karte hai? steps batao"],
        "tr": ["merhaba, bu soruyu anlatır mısın? {q}", "{q}\nbunu nasıl çözerim?"],
        "bare": ["{q}", "{q}\n?", "Q: {q}"],
    },
}
STUDENT_FOLLOWUP = {
    "dev": ["why?", "ok but why that step", "thanks! and the next one?", "can you check my answer", "i got a different number"],
    "holdout": ["wait what", "hmm ok", "so the answer is that?", "can u explain step 2 again", "ty"],
}

# --- benign: homework-tutor products (tutor_product) ------------------------------------------

# A tutor company's fixed system prompt: it asks for every step, in the product's language.
TUTOR_SYSTEM = {
    "dev": {
        "en": [
            "You are MathBuddy, a patient tutor for middle- and high-school students. Explain EACH step of the solution in detail, say why the step is needed, use simple words, and end with the final answer in bold. Never just give the answer.",
            "You are a homework helper. Break the solution into numbered steps. For each step, explain the reasoning in detail so the student can follow it, then check the result. Be encouraging.",
        ],
        "es": [
            "Eres un tutor de matemáticas para estudiantes de secundaria. Explica CADA paso de la solución con detalle y en español sencillo, justifica cada paso y termina con la respuesta final.",
        ],
        "pt": [
            "Você é um tutor de matemática. Explique CADA passo da solução em detalhe, em português simples, justificando cada passo, e termine com a resposta final.",
        ],
    },
    "holdout": {
        "en": [
            "You are Tutorly's step-by-step coach. Walk the learner through every step of the solution, explaining the idea behind each step in detail before doing it. Ask no questions back; finish with 'Final answer:'.",
            "Act as a friendly math teacher. Show the complete worked solution: each step on its own line, with a detailed explanation of why it works. Highlight common mistakes at the relevant step.",
        ],
        "hi": [
            "आप एक धैर्यवान गणित शिक्षक हैं। समाधान का हर चरण विस्तार से समझाइए, हर चरण का कारण बताइए, और अंत में अंतिम उत्तर दीजिए।",
        ],
        "fr": [
            "Tu es un professeur de mathématiques bienveillant. Explique CHAQUE étape de la solution en détail, en français simple, justifie chaque étape, puis donne la réponse finale.",
        ],
        "id": [
            "Kamu adalah tutor matematika. Jelaskan SETIAP langkah penyelesaian secara rinci dengan bahasa sederhana, beri alasan tiap langkah, lalu tulis jawaban akhir.",
        ],
    },
}
# How the product passes the student's typed question (the user message template).
TUTOR_USER = {
    "dev": ["{q}", "Student question:\n{q}", "Problem from the student's homework:\n{q}\n\nGrade level: {g}"],
    "holdout": ["{q}", "[learner]\n{q}", "Exercise:\n{q}\n(grade {g})"],
}
# Follow-ups that react to the answer just given ({n} is a number the student quotes).
TUTOR_FOLLOWUP = {
    "dev": {
        "en": [
            "I don't get step {n}, can you explain it differently?",
            "Why do we multiply there?",
            "I got {n} instead, where did I go wrong?",
            "Can you give me a similar problem to practice?",
            "ok that makes sense. what if the number was {n}?",
            "thanks!! can you explain the last step again?",
        ],
        "es": ["No entiendo el paso {n}, me lo explicas otra vez?", "Yo saqué {n}, qué hice mal?", "gracias! y si fuera {n}?"],
        "pt": ["Não entendi o passo {n}, pode explicar de novo?", "Eu achei {n}, onde errei?", "valeu! e se fosse {n}?"],
    },
    "holdout": {
        "en": [
            "wait, how did you get from step {n} to the next one?",
            "my teacher got {n}, which one is right?",
            "can you make the explanation shorter?",
            "what's the rule you used in step {n}?",
            "ok I think I get it, can you check: is it {n}?",
        ],
        "hi": ["step {n} samajh nahi aaya, phir se samjhaiye", "mera answer {n} aaya, galti kahan hai?"],
        "fr": ["je comprends pas l'étape {n}, tu peux réexpliquer ?", "j'ai trouvé {n}, c'est faux ?"],
        "id": ["langkah {n} kurang paham, bisa dijelaskan lagi?", "jawabanku {n}, salahnya di mana?"],
    },
}

# --- benign: repeated-sampling evaluations (passk_eval) ---------------------------------------

# Public evaluation templates: many unrelated accounts run these very strings (a harness's
# defaults), so sharing one is no evidence of a common operator.
PASSK_PUBLIC = {
    "dev": {
        "math": "Solve the following problem. Reason step by step and write your final answer as 'ANSWER: <value>' on the last line.\n\n{q}",
        "gsm8k": "Question: {q}\nThink step by step. At the end, write 'The final answer is <number>'.",
        "code": "Complete the Python function below. Output the full function in a single ```python code block.\n\n{q}",
        "mbpp": "You are given a programming task. Write a correct Python function.\n\nTask: {q}\n\nPut your solution in a ```python block.",
    },
    "holdout": {
        "math": "Problem:\n{q}\n\nWork it out step by step, then give the final result inside \\boxed{{}}.",
        "gsm8k": "{q}\nSolve carefully and end your reply with a line 'Answer: <number>'.",
        "code": "# Task: implement the function so that it passes hidden unit tests.\n{q}",
        "mbpp": "Write a Python function that satisfies the description. Return only code.\n\nDescription: {q}",
    },
}
# A lab's own (private) evaluation wrapper; colleagues of one lab share it.
PASSK_PRIVATE = {
    "dev": [
        "[eval v3 | {fam}] Solve the item below. Think as long as you need, then answer in the format '#### <answer>'.\n\n{q}",
        "### Item\n{q}\n### Instructions\nProduce a careful solution; last line must be 'Final: <answer>'.",
    ],
    "holdout": [
        "<item type='{fam}'>\n{q}\n</item>\nReason at length, then emit <final>answer</final>.",
        "Lab harness prompt ({fam}). Provide your best solution, then 'RESULT: <answer>'.\n---\n{q}",
    ],
}


def student_typos(rng: random.Random, text: str, rate: float) -> str:
    """``text`` as typed in a hurry: about ``rate`` of its words get one slip of the finger.

    Slips are swapped, dropped or doubled letters; a third of messages also lose their
    leading capital. Item text gets slips too: people retype problems, they do not paste
    them byte for byte.
    """
    if rate <= 0:
        return text
    words = text.split(" ")
    for j, w in enumerate(words):
        if len(w) > 3 and rng.random() < rate:
            p = rng.randrange(len(w) - 1)
            kind = rng.randrange(3)
            if kind == 0:
                w = w[:p] + w[p + 1] + w[p] + w[p + 2 :]
            elif kind == 1:
                w = w[:p] + w[p + 1 :]
            else:
                w = w[: p + 1] + w[p] + w[p + 1 :]
            words[j] = w
    out = " ".join(words)
    if out and rng.random() < 0.33:
        out = out[0].lower() + out[1:]
    return out
