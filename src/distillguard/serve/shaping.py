"""Apply countermeasure directives (serve/directives.py) to a request and to its response.

Gateway-side and dependency-free (the LiteLLM plugin runs it inside the proxy): requests and
responses may be plain dicts (OpenAI / Anthropic JSON) or LiteLLM's response objects. Each
function returns the list of changes it made (or, with ``dry_run``, would make), which is what
shadow mode records.

Reasoning content comes in three shapes: OpenAI-style ``message.reasoning_content`` (also what
LiteLLM normalises providers to), LiteLLM's ``message.thinking_blocks`` and Anthropic's
``content`` blocks of type ``thinking`` / ``redacted_thinking``. Shortening keeps the first
``reasoning_chars`` characters; a shortened Anthropic block loses its ``signature`` (it no longer
matches), so a client cannot send it back in a later turn. The final answer (``content`` text,
tool calls) is never changed: a canary is appended after it as its own line.
"""

from __future__ import annotations

from typing import Any

EFFORT_ORDER = {"minimal": 0, "low": 1, "medium": 2, "high": 3}
ELLIPSIS = " […]"


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _set(obj: Any, name: str, value: Any) -> None:
    if isinstance(obj, dict):
        if value is None:
            obj.pop(name, None)
        else:
            obj[name] = value
        return
    if value is None:
        try:
            delattr(obj, name)
            return
        except AttributeError:
            pass
    setattr(obj, name, value)


def shape_request(data: dict, request: dict, *, dry_run: bool = False) -> list[str]:
    """Cap ``max_tokens``/``max_completion_tokens``/``n``, drop log-probabilities, lower ``reasoning_effort``."""
    changes: list[str] = []

    def put(k: str, v: Any) -> None:
        changes.append(f"{k}: {data.get(k)!r} -> {v!r}")
        if not dry_run:
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v

    cap = request.get("max_tokens")
    if cap is not None:
        present = [k for k in ("max_tokens", "max_completion_tokens") if isinstance(data.get(k), int)]
        for k in present:
            if data[k] > cap:
                put(k, cap)
        if not present:
            put("max_tokens", cap)
    n = request.get("n")
    if n is not None and isinstance(data.get("n"), int) and data["n"] > n:
        put("n", n)
    if request.get("drop_logprobs"):
        for k in ("logprobs", "top_logprobs"):
            if data.get(k) not in (None, False, 0):
                put(k, None)
    eff = request.get("reasoning_effort")
    cur = data.get("reasoning_effort")
    if eff is not None and isinstance(cur, str) and EFFORT_ORDER.get(cur, -1) > EFFORT_ORDER[eff]:
        put("reasoning_effort", eff)
    return changes


def _cut(text: str, keep: int) -> str:
    return text if len(text) <= keep else text[:keep].rstrip() + ELLIPSIS


def _shape_blocks(blocks: list, mode: str, keep: int, changes: list[str], where: str, dry_run: bool) -> list:
    """Thinking blocks (Anthropic-style dicts or objects): withheld or shortened; other blocks kept."""
    out = []
    for b in blocks:
        kind = _get(b, "type")
        if kind not in ("thinking", "redacted_thinking"):
            out.append(b)
            continue
        if mode == "withhold" or kind == "redacted_thinking":
            changes.append(f"{where}: {kind} block withheld")
            continue
        text = _get(b, "thinking") or ""
        if len(text) > keep:
            changes.append(f"{where}: thinking {len(text)} -> {keep} chars")
            if not dry_run:
                b = {"type": "thinking", "thinking": _cut(text, keep)}  # the signature no longer matches: dropped
        out.append(b)
    return out


def shape_response(response: Any, resp: dict, *, drop_logprobs: bool = False, dry_run: bool = False) -> list[str]:
    """Withhold or shorten reasoning content in every choice (and Anthropic content blocks)."""
    changes: list[str] = []
    mode = resp.get("reasoning", "keep")
    keep = int(resp.get("reasoning_chars", 400))
    for i, ch in enumerate(_get(response, "choices") or []):
        msg = _get(ch, "message") or _get(ch, "delta")
        if drop_logprobs and _get(ch, "logprobs") is not None:
            changes.append(f"choice {i}: logprobs dropped")
            if not dry_run:
                _set(ch, "logprobs", None)
        if msg is None or mode == "keep":
            continue
        rc = _get(msg, "reasoning_content")
        if isinstance(rc, str) and rc:
            if mode == "withhold":
                changes.append(f"choice {i}: reasoning_content withheld ({len(rc)} chars)")
                if not dry_run:
                    _set(msg, "reasoning_content", None)
            elif len(rc) > keep:
                changes.append(f"choice {i}: reasoning_content {len(rc)} -> {keep} chars")
                if not dry_run:
                    _set(msg, "reasoning_content", _cut(rc, keep))
        tb = _get(msg, "thinking_blocks")
        if isinstance(tb, list) and tb:
            new = _shape_blocks(tb, mode, keep, changes, f"choice {i}", dry_run)
            if not dry_run:
                _set(msg, "thinking_blocks", new or None)
    content = _get(response, "content")  # Anthropic /v1/messages
    if isinstance(content, list) and mode != "keep":
        new = _shape_blocks(content, mode, keep, changes, "content", dry_run)
        if not dry_run:
            _set(response, "content", new)
    return changes


def append_to_answer(response: Any, text_of: Any) -> bool:
    """Append ``text_of(answer)`` to the first choice's text answer (or Anthropic's last text block).

    ``text_of`` maps the answer to the new answer (e.g. ``canary.weave``). False when the response
    has no text answer to carry it (tool calls only, streaming)."""
    choices = _get(response, "choices")
    if choices:
        msg = _get(choices[0], "message")
        c = _get(msg, "content") if msg is not None else None
        if isinstance(c, str) and c:
            _set(msg, "content", text_of(c))
            return True
        return False
    content = _get(response, "content")
    if isinstance(content, list):
        for b in reversed(content):
            if _get(b, "type") == "text" and isinstance(_get(b, "text"), str):
                _set(b, "text", text_of(_get(b, "text")))
                return True
    return False


class StreamShaper:
    """Response shaping for a streamed response, one chunk at a time (OpenAI-style ``delta``s).

    Reasoning deltas are dropped (``withhold``) or passed until ``reasoning_chars`` characters per
    choice have gone out, then cut with one ellipsis (``shorten``); thinking-block deltas likewise;
    log-probabilities are dropped when directed. Answer deltas pass unchanged. Canaries are not
    woven into streams."""

    def __init__(self, resp: dict, *, drop_logprobs: bool = False):
        self.mode = resp.get("reasoning", "keep")
        self.keep = int(resp.get("reasoning_chars", 400))
        self.drop_logprobs = drop_logprobs
        self._sent: dict[int, int] = {}

    @property
    def active(self) -> bool:
        return self.mode != "keep" or self.drop_logprobs

    def _text(self, idx: int, text: str) -> str | None:
        if self.mode == "withhold":
            return None
        sent = self._sent.get(idx, 0)
        self._sent[idx] = sent + len(text)
        if sent + len(text) <= self.keep:
            return text
        if sent >= self.keep:
            return None
        return text[: self.keep - sent].rstrip() + ELLIPSIS

    def apply(self, chunk: Any) -> Any:
        for pos, ch in enumerate(_get(chunk, "choices") or []):
            idx = _get(ch, "index")
            idx = pos if not isinstance(idx, int) else idx
            if self.drop_logprobs and _get(ch, "logprobs") is not None:
                _set(ch, "logprobs", None)
            delta = _get(ch, "delta")
            if delta is None or self.mode == "keep":
                continue
            rc = _get(delta, "reasoning_content")
            if isinstance(rc, str) and rc:
                new = self._text(idx, rc)
                if new != rc:
                    _set(delta, "reasoning_content", new)
            tb = _get(delta, "thinking_blocks")
            if isinstance(tb, list) and tb:
                out = []
                for b in tb:
                    t = _get(b, "thinking")
                    new = self._text(idx, t) if isinstance(t, str) and _get(b, "type") == "thinking" else None
                    if new is not None:
                        out.append({"type": "thinking", "thinking": new})
                _set(delta, "thinking_blocks", out or None)
        return chunk
