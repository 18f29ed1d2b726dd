"""Item-space groups (rule dg-102): unlinked student-like accounts that together sweep new items.

Each account alone is a diligent student; only the group shows the campaign. The same shape
with popular items shared across accounts (students, public benchmarks) or from organisation
accounts must stay unflagged, and the service must decide exactly as the scan.
"""

from __future__ import annotations

import csv
from datetime import datetime
import random

import orjson
import pytest

from distillguard.scan import scan

T0 = 1_793_577_600_000  # 2026-11-02T00:00:00Z
WRAPPERS = ["{q}", "hw question: {q}", "stuck on this one {q}", "{q}\nhow do i do this??", "can u explain {q}", "{q} pls"]
WORDS = ("apples baskets trains stations farmers fields coins jars pages books runners laps tanks pipes "
         "workers hours tickets buses cookies trays marbles bags students desks boxes shelves candles "
         "cartons bottles crates ribbons meters gardens rows seeds pencils packs stamps albums kites "
         "strings bikes wheels cakes slices lamps rooms chairs tables cards decks shells buckets").split()


def item(k: int) -> str:
    """A distinct exam-shaped word problem (number ``k`` of a made-up item space)."""
    r = random.Random(k)
    w = r.sample(WORDS, 8)
    return (f"{w[0].capitalize()} and {w[1]} fill {r.randint(3, 90)} {w[2]} while {w[3]} carry {r.randint(2, 40)} {w[4]} "
            f"past {w[5]}; how many {w[6]} remain for the {w[7]}?")


def account(rng: random.Random, name: str, items: list[str], *, org: str | None = None, start: int = 0) -> list[dict]:
    """One person-paced account: its own network, client and card; one item every few minutes."""
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    ua = rng.choice(["Mozilla/5.0 (Windows NT 10.0)", "Mozilla/5.0 (Macintosh)", "MyChatApp/3.2 (iPhone)"]) + f" b{rng.randrange(10**6)}"
    ts = T0 + start
    out = []
    for i, q in enumerate(items):
        ts += rng.randint(180_000, 420_000)
        rec = {"request_id": f"{name}-{i}", "ts": ts, "account_id": name, "client_ip": ip, "user_agent": ua,
               "payment_fingerprint": f"pf_{name}", "model": "frontier-large", "turn": 1, "max_tokens": 1024,
               "prompt": rng.choice(WRAPPERS).format(q=q), "output_tokens": rng.randint(200, 600)}
        if org:
            rec["org_id"] = org
        out.append(rec)
    return out


def campaign(rng: random.Random, accounts: int = 8, per: int = 14, shared: bool = False, orgs: bool = False) -> list[dict]:
    recs = []
    for a in range(accounts):
        # A sweep gives each account its own slice; students share one popular problem set.
        mine = [item(k) for k in (range(per) if shared else range(a * per, (a + 1) * per))]
        if shared:
            rng.shuffle(mine)
        recs += account(rng, f"acct_s{a}", mine, org=f"org_{a}" if orgs else None, start=a * 60_000)
    return sorted(recs, key=lambda r: r["ts"])


def _scan(recs: list[dict], tmp_path) -> dict[str, dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in recs) + b"\n")
    scan([str(log)], tmp_path / "out", show_progress=False)
    with open(tmp_path / "out" / "accounts.csv", newline="") as f:
        return {r["account_id"]: r for r in csv.DictReader(f)}


def test_unlinked_accounts_sweeping_disjoint_slices_are_challenged_together(tmp_path):
    acc = _scan(campaign(random.Random(1)), tmp_path)
    assert len(acc) == 8
    for a in acc.values():
        # Population-level evidence only: challenged, never throttled or suspended on it.
        assert a["action"] == "challenge", a
        assert "sweep:unlinked_item_sweep" in a["reasons"]
        # An item space is no link: the accounts form no cluster.
        assert not a["cluster_id"]


def test_a_student_asking_items_others_asked_is_not_challenged_with_a_campaign_nearby(tmp_path):
    # Bounded influence: a member inherits the group's verdict only for its own share of new
    # items; a student whose items were asked before (in other words) is not pulled in.
    rng = random.Random(5)
    student = account(rng, "acct_student", [item(k) for k in range(0, 112, 8)], start=6 * 3_600_000)
    acc = _scan(campaign(random.Random(1)) + student, tmp_path)
    assert acc["acct_student"]["action"] in ("none", "monitor"), acc["acct_student"]
    assert sum(a["action"] == "challenge" for a in acc.values()) == 8


def test_students_asking_the_same_popular_items_are_not_a_sweep(tmp_path):
    acc = _scan(campaign(random.Random(2), shared=True), tmp_path)
    assert all(a["action"] in ("none", "monitor") for a in acc.values()), acc


def test_a_lone_diligent_student_is_not_a_sweep(tmp_path):
    acc = _scan(campaign(random.Random(3), accounts=2, per=40), tmp_path)
    assert all(a["action"] in ("none", "monitor") for a in acc.values()), acc


def test_organisation_accounts_are_judged_on_their_own(tmp_path):
    # A tutoring product or a lab is a known business: not pooled with anonymous consumers.
    acc = _scan(campaign(random.Random(4), orgs=True), tmp_path)
    assert all(a["action"] in ("none", "monitor") for a in acc.values()), acc


def test_the_service_decides_the_item_sweep_as_the_scan(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from distillguard.serve.app import build_service, create_app
    from distillguard.serve.auth import TokenAuth
    from distillguard.serve.config import ServeConfig
    from serve_util import H_ADMIN, H_DECIDE, H_INGEST, TOKENS, compare, decisions_of, scan_accounts

    recs = campaign(random.Random(1))
    _scan(recs, tmp_path)
    lines = [orjson.dumps(r) for r in recs]
    cfg = ServeConfig(state_dir=tmp_path / "state", refresh_ms=60_000)
    with TestClient(create_app(build_service(cfg, TokenAuth(TOKENS)))) as c:
        for i in range(0, len(lines), 25):  # in batches, refreshing (incrementally) in between
            assert c.post("/v1/events", content=b"\n".join(lines[i:i + 25]) + b"\n", headers=H_INGEST).status_code == 200
            assert c.post("/v1/admin/refresh", headers=H_ADMIN).status_code == 200
        docs = c.get("/v1/decisions", headers=H_DECIDE).json()["decisions"]
    diffs = compare(scan_accounts(tmp_path / "out"), decisions_of(docs))
    assert not diffs, "\n".join(diffs[:20])
    assert sum(d["flagged"] for d in docs) == 8


def test_group_verdicts_use_no_later_traffic(tmp_path):
    recs = campaign(random.Random(1))
    full = _scan(recs, tmp_path / "full")
    flags = sorted(a["first_flagged_ts"] for a in full.values() if a["first_flagged_ts"])
    cut = flags[len(flags) // 2]  # half of the campaign flagged by then
    cut_ms = int(datetime.fromisoformat(cut.replace("Z", "+00:00")).timestamp() * 1000)
    part = _scan([r for r in recs if r["ts"] <= cut_ms], tmp_path / "part")
    for a, row in full.items():
        if row["first_flagged_ts"] and row["first_flagged_ts"] <= cut:
            assert part[a]["first_flagged_ts"] == row["first_flagged_ts"], (a, row, part[a])
