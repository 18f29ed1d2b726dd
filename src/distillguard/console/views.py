"""Data for the pages: queue rows, case evidence, chart geometry (drawn as SVG by the templates).

Everything here returns plain numbers and strings; the templates escape every string (Jinja2
autoescape), including ids inside SVG, because account ids, prompts and appeal messages all come
from outside.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from functools import lru_cache

from .store import ACTIONS, BUCKET_MS, Store

SORTS = {"score": "score", "events": "events", "first_flagged": "first_flagged_ms", "account": "account_id", "cluster": "cluster_id"}
LIFTING = {"false_positive", "appeal_lifted"}
DECISIONS = {"confirm": "attack", "false_positive": "benign", "inconclusive": None}
ACTION_COLOR = {"none": "#9aa5b1", "monitor": "#5b8def", "challenge": "#e0a100", "throttle": "#e8590c", "suspend": "#c92a2a"}


def fmt_ms(ms) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@lru_cache(maxsize=1)
def rules_meta() -> dict[str, dict]:
    """reason code -> rule metadata (title, description, level, false positives, id, tags)."""
    from ..scoring.rules import load_rules

    out = {}
    for r in load_rules():
        out[r.reason] = {"id": r.id, "title": r.title, "description": r.description, "level": r.level,
                         "falsepositives": list(r.falsepositives), "tags": list(r.tags), "scope": list(r.scope)}
    return out


def explain_reason(code: str) -> dict:
    scope = "account"
    c = code
    if c.startswith("cluster:"):
        scope, c = "cluster", c[len("cluster:"):]
    if c.startswith("model:"):
        f = c[len("model:"):]
        return {"code": code, "scope": scope, "title": f"Learned layer: {f}",
                "description": f"The feature '{f}' is among the model's largest contributions to the score.",
                "level": "", "falsepositives": [], "id": "model"}
    if c == "partner_indicator":
        return {"code": code, "scope": scope, "title": "Partner indicator match",
                "description": "A coalition partner's STIX indicator matched this account's traffic.",
                "level": "", "falsepositives": [], "id": "partner"}
    m = rules_meta().get(c)
    if m:
        return {"code": code, "scope": scope, **m}
    return {"code": code, "scope": scope, "title": c, "description": "", "level": "", "falsepositives": [], "id": ""}


def effective_action(action: str, label: dict | None) -> tuple[str, bool]:
    """(action now in force, lifted?) after analyst decisions."""
    if label and label["decision"] in LIFTING and action not in ("none", "monitor"):
        return "none", True
    return action, False


def queue(store: Store, *, action: str = "", reason: str = "", cluster: str = "", status: str = "review",
          sort: str = "score", direction: str = "desc", limit: int = 200) -> list[dict]:
    where, params = ["1=1"], []
    if action in ACTIONS:
        where.append("action = ?")
        params.append(action)
    if reason:
        where.append("list_contains(string_split(reasons, ';'), ?)")
        params.append(reason)
    if cluster:
        where.append("cluster_id = ?")
        params.append(cluster)
    if status == "review":
        where.append("(action <> 'none' OR account_id IN (SELECT account_id FROM appeals WHERE status = 'pending'))")
    elif status == "flagged":
        where.append("flagged")
    col = SORTS.get(sort, "score")
    d = "ASC" if direction == "asc" else "DESC"
    rows = store.rows(f"SELECT * FROM accounts WHERE {' AND '.join(where)} ORDER BY {col} {d} NULLS LAST, account_id LIMIT 5000", params)
    labels = store.latest_labels()
    appeals = {r["account_id"]: r for r in store.rows("SELECT * FROM appeals WHERE status = 'pending' ORDER BY id")}
    out = []
    for r in rows:
        lab = labels.get(r["account_id"])
        eff, lifted = effective_action(r["action"], lab)
        r.update(label=(lab or {}).get("label") or ((lab or {}).get("decision") if lab else None), decided_by=(lab or {}).get("username"),
                 effective=eff, lifted=lifted, appeal=appeals.get(r["account_id"]),
                 reason_list=[c for c in r["reasons"].split(";") if c], first_flagged=fmt_ms(r["first_flagged_ms"]))
        if status == "open" and (lab or not r["flagged"]):
            continue
        if status == "labelled" and not lab:
            continue
        if status == "appealed" and not r["appeal"]:
            continue
        out.append(r)
        if len(out) >= limit:
            break
    return out


def reason_codes(store: Store) -> list[str]:
    return [r["c"] for r in store.rows("SELECT DISTINCT unnest(string_split(reasons, ';')) AS c FROM accounts WHERE reasons <> '' ORDER BY 1")]


def cluster_ids(store: Store) -> list[str]:
    return [r["cluster_id"] for r in store.rows("SELECT cluster_id FROM clusters ORDER BY score DESC, cluster_id")]


# -- charts ---------------------------------------------------------------------------------

def timeline(store: Store, accounts: list[str], flag_ms: int | None, width: int = 760, height: int = 140) -> dict:
    rows = store.rows("SELECT bucket_ms, sum(n)::BIGINT AS n FROM activity WHERE list_contains(?, account_id) GROUP BY 1 ORDER BY 1", [accounts])
    s = json.loads(store.meta("summary", "{}") or "{}")
    t0 = _iso_ms(s.get("event_time_start")) or (rows[0]["bucket_ms"] if rows else 0)
    t1 = _iso_ms(s.get("event_time_end")) or (rows[-1]["bucket_ms"] + BUCKET_MS if rows else 1)
    t0 = min([t0] + [r["bucket_ms"] for r in rows])
    t1 = max([t1] + [r["bucket_ms"] + BUCKET_MS for r in rows])
    span = max(t1 - t0, BUCKET_MS)
    top = max([r["n"] for r in rows] + [1])
    pl, pr, pt, pb = 40, 10, 10, 24
    iw, ih = width - pl - pr, height - pt - pb
    bw = max(iw * BUCKET_MS / span - 1, 1)
    bars = [{"x": pl + iw * (r["bucket_ms"] - t0) / span, "y": pt + ih * (1 - r["n"] / top), "w": bw, "h": ih * r["n"] / top,
             "title": f"{fmt_ms(r['bucket_ms'])} UTC: {r['n']} exchanges"} for r in rows]
    ticks = []
    for i in range(5):
        t = t0 + span * i / 4
        ticks.append({"x": pl + iw * i / 4, "label": fmt_ms(t)[5:16]})
    flag = None
    if flag_ms is not None and t0 <= flag_ms <= t1:
        flag = {"x": pl + iw * (flag_ms - t0) / span, "label": "first flag " + fmt_ms(flag_ms)[11:16]}
    return {"w": width, "h": height, "bars": bars, "ticks": ticks, "flag": flag, "top": top, "pl": pl, "pt": pt, "ih": ih, "iw": iw,
            "total": sum(r["n"] for r in rows)}


def hour_strip(store: Store, accounts: list[str]) -> dict:
    rows = store.rows("SELECT ((bucket_ms // 3600000) % 24)::INT AS h, sum(n)::BIGINT AS n FROM activity "
                      "WHERE list_contains(?, account_id) GROUP BY 1", [accounts])
    by = {r["h"]: r["n"] for r in rows}
    top = max(list(by.values()) + [1])
    cells = [{"h": h, "n": by.get(h, 0), "x": 30 + h * 30, "op": 0.08 + 0.92 * by.get(h, 0) / top if by.get(h, 0) else 0.04} for h in range(24)]
    return {"cells": cells, "covered": sum(1 for h in by if by[h] > 0)}


def contributions(store: Store, account_id: str, k: int = 12) -> dict:
    rows = store.rows("SELECT * FROM contrib WHERE account_id = ? ORDER BY abs(contribution) DESC", [account_id])
    if not rows:
        return {"rows": [], "logit": None}
    logit = sum(r["contribution"] for r in rows)
    shown = [r for r in rows if r["feature"] != "(intercept)"][:k]
    m = max([abs(r["contribution"]) for r in shown] + [1e-9])
    for i, r in enumerate(shown):
        r["y"] = 6 + i * 22
        r["bw"] = 220 * abs(r["contribution"]) / m
        r["bx"] = 420 if r["contribution"] >= 0 else 420 - r["bw"]
    icpt = next((r["contribution"] for r in rows if r["feature"] == "(intercept)"), 0.0)
    return {"rows": shown, "logit": logit, "prob": 1 / (1 + math.exp(-logit)), "intercept": icpt, "h": 12 + 22 * len(shown)}


def graph(store: Store, focus: list[str], center: str | None = None, cap: int = 40) -> dict:
    """Linked-accounts graph: ``focus`` accounts plus those sharing a linking key with them."""
    keys = store.rows("SELECT key, count(*) AS holders FROM links WHERE key IN (SELECT key FROM links WHERE list_contains(?, account_id)) "
                      "GROUP BY key HAVING count(*) BETWEEN 2 AND 200", [focus])
    key_list = [k["key"] for k in keys]
    pairs = store.rows("SELECT key, account_id FROM links WHERE list_contains(?, key) ORDER BY key, account_id", [key_list])
    holders: dict[str, list[str]] = {}
    for p in pairs:
        holders.setdefault(p["key"], []).append(p["account_id"])
    nodes = list(dict.fromkeys([a for a in focus][:cap]))
    for k, accs in holders.items():
        for a in accs:
            if len(nodes) >= cap:
                break
            if a not in nodes:
                nodes.append(a)
    idx = {a: i for i, a in enumerate(nodes)}
    edges: dict[tuple[int, int], set[str]] = {}
    for k, accs in holders.items():
        inn = [idx[a] for a in accs if a in idx][:30]
        for i in range(len(inn)):
            for j in range(i + 1, len(inn)):
                edges.setdefault((inn[i], inn[j]), set()).add(k.split(":", 1)[0])
        if len(edges) > 600:
            break
    info = {r["account_id"]: r for r in store.rows("SELECT account_id, action, score, cluster_id FROM accounts WHERE list_contains(?, account_id)", [nodes])}
    W, H = 760, 460
    cx, cy, R = W / 2, H / 2, min(W, H) / 2 - 50
    pos = []
    ring = [a for a in nodes if a != center]
    for a in nodes:
        if a == center:
            pos.append((cx, cy))
        else:
            i = ring.index(a)
            ang = 2 * math.pi * i / max(len(ring), 1) - math.pi / 2
            pos.append((cx + R * math.cos(ang), cy + R * math.sin(ang)))
    out_nodes = [{"id": a, "x": pos[i][0], "y": pos[i][1], "color": ACTION_COLOR.get((info.get(a) or {}).get("action", "none"), "#999"),
                  "score": (info.get(a) or {}).get("score"), "center": a == center, "short": a[-6:]} for i, a in enumerate(nodes)]
    out_edges = [{"x1": pos[i][0], "y1": pos[i][1], "x2": pos[j][0], "y2": pos[j][1], "kinds": ", ".join(sorted(k))} for (i, j), k in edges.items()]
    kinds: dict[str, int] = {}
    for k in key_list:
        kk = k.split(":", 1)[0]
        kinds[kk] = kinds.get(kk, 0) + 1
    return {"w": W, "h": H, "nodes": out_nodes, "edges": out_edges, "kinds": kinds, "truncated": len(nodes) >= cap}


def _iso_ms(s: str | None) -> int | None:
    if not s:
        return None
    try:
        return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None
