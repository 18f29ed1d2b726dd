"""Agent sessions: tool-calling loops, as benign coding agents and agent harvesters send them.

One session is one conversation: the task message, then one model call per step. Every call
after the first ends with the result of the tool the previous call asked for
(``last_role`` ``tool``), so ``message_count`` grows by two per step (the assistant's tool
call and the tool's result) and the input grows by the model's output and the tool result.
Step sizes come from real trajectories (:class:`~distillguard.sim.corpora.AgentTask`) where
the caller has them.

:func:`concurrent_sessions` runs many sessions of one account side by side (an agent
harness with several workers) and still yields one time-ordered stream.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Sequence
from math import exp

from distillguard.sim.context import Event
from distillguard.sim.exchange import Caller


def message_count(system: bool, before: int, step: int) -> int:
    """Messages in the request of ``step`` (0-based) of a user turn.

    ``before`` counts the messages of the conversation's earlier turns; the turn adds its
    user message, then an assistant tool call and a tool result per finished step.
    """
    return (1 if system else 0) + before + 1 + 2 * step


def agent_session(
    rng: random.Random,
    caller: Caller,
    start: int,
    end: int,
    *,
    task: str,
    shape: Sequence[tuple[int, int]],
    tool_names: Sequence[str],
    conversation_id: str,
    base_context: int,
    step_gap_s: float,
    out_mult: float,
    final_out: int,
    log_agent_fields: bool = True,
) -> Iterator[Event]:
    """Calls of one agent session (one user task) starting at ``start``.

    Parameters
    ----------
    shape : sequence of (int, int)
        Per step: output tokens of the model call and characters of the tool result it
        triggered (real trajectory sizes, or drawn).
    tool_names : sequence of str
        Tools offered with every call (``tool_count`` is their number).
    base_context : int
        Input tokens besides the task before the first step (repository map, instructions).
    step_gap_s : float
        Median tool execution time between a response and the next call.
    out_mult : float
        Multiplier on the per-step output sizes (high-effort, verbose agents write more).
    final_out : int
        Output tokens of the last call (the final answer or summary).
    log_agent_fields : bool
        Whether the account's logging pipeline records ``tool_names``, ``message_count``,
        ``last_role`` and ``output_tool_calls`` (pipelines older than 2026-12-07 do not).
    """
    ts = start
    hist = base_context
    n = len(shape)
    names = list(tool_names)
    system = caller.style.system_prompt is not None
    for k, (out_tok, result_chars) in enumerate(shape):
        if ts >= end:
            return
        last = k == n - 1
        extra = {}
        if log_agent_fields:
            extra = {
                "tool_names": names,
                "message_count": message_count(system, 0, k),
                "last_role": "user" if k == 0 else "tool",
                "output_tool_calls": 0 if last else (1 if rng.random() < 0.85 else 2),
            }
        rec = caller.make(
            prompt=task,
            want_out=final_out if last else max(1, int(out_tok * out_mult)),
            extra_in=hist,
            conversation_id=conversation_id,
            turn=1,
            tool_count=len(names),
            finish=None if last else "tool_calls",
            **extra,
        )
        nxt = ts + caller.last_latency + int(step_gap_s * exp(rng.gauss(0, 0.8)) * 1000)
        hist += caller.last_out + result_chars // 4
        yield ts, rec
        ts = nxt


def concurrent_sessions(starts: Iterator[int], session: Callable[[int], Iterator[Event]]) -> Iterator[Event]:
    """Merge sessions that start at ``starts`` and may overlap into one ordered stream.

    A session is only created once every earlier event has been yielded, so memory is
    the number of sessions running at one time, not the number in the window.
    """
    heap: list = []
    seq = 0
    nxt = next(starts, None)
    while True:
        while nxt is not None and (not heap or nxt <= heap[0][0]):
            gen = session(nxt)
            ev = next(gen, None)
            if ev is not None:
                heapq.heappush(heap, (ev[0], seq, ev, gen))
                seq += 1
            nxt = next(starts, None)
        if not heap:
            return
        _, _, ev, gen = heapq.heappop(heap)
        yield ev
        ev = next(gen, None)
        if ev is not None:
            heapq.heappush(heap, (ev[0], seq, ev, gen))
            seq += 1
