"""``distillguard provenance``: test texts and suspect models for our marks, verify the evidence log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

provenance_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                             help="Proof of distillation: test texts or a suspect model for our watermark and canaries.")
console = Console()


def _fail(msg: str, code: int = 2) -> None:
    console.print("error: " + msg, style="red", markup=False)
    raise typer.Exit(code)


def _keys(path: Optional[Path]):
    from .keys import load_mark_keys

    try:
        return load_mark_keys(path)
    except (ValueError, OSError, KeyError) as e:
        _fail(f"mark key: {e}")


def _accounts(evidence: Optional[Path], accounts: Optional[List[str]]) -> list[str]:
    out = list(accounts or [])
    if evidence is not None:
        from .evidence import read_entries

        try:
            out += [e["account"] for e in read_entries(evidence) if e.get("mark") == "canary"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            _fail(f"cannot read the evidence log {evidence}: {e}")
    return list(dict.fromkeys(out))


def _read_texts(paths: List[Path], field: str) -> list[str]:
    texts: list[str] = []
    skipped = 0
    for p in paths:
        if not p.is_file():
            _fail(f"no such file: {p}")
        if p.suffix == ".jsonl":
            with open(p, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        r = json.loads(line)
                    except ValueError:
                        _fail(f"{p}:{n}: not JSON")
                    if isinstance(r, dict) and isinstance(r.get(field), str):
                        texts.append(r[field])
                    elif isinstance(r, dict) and isinstance(r.get("choices"), list):  # OpenAI responses
                        for ch in r["choices"]:
                            m = ch.get("message") if isinstance(ch, dict) else None
                            if isinstance(m, dict):
                                texts += [t for t in (m.get("reasoning_content"), m.get("content")) if isinstance(t, str)]
                    elif isinstance(r, str):
                        texts.append(r)
                    else:
                        skipped += 1
        else:
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
    if skipped:  # never silently lost: say how many records held no text to score
        console.print(f"{skipped:,} JSONL records without a {field!r} text or chat choices were skipped", markup=False)
    return texts


def _show(res: dict) -> None:
    wm = res["watermark"]
    t = Table(title="watermark (radioactivity test, de-duplicated pairs)")
    for c in ("tokens", "scored", "green", "green share", "p-value"):
        t.add_column(c, justify="right")
    share = wm["green_share"]
    t.add_row(f"{wm['tokens']:,}", f"{wm['scored']:,}", f"{wm['green']:,}", "-" if share is None else f"{share:.4f}",
              f"{wm['p_value']:.3g}" if wm["p_value"] > 0 else f"<= 1e{wm['log10_p']:.0f}")
    console.print(t)
    found = res["canaries"]["found"]
    console.print(f"canaries: {len(found)} hit(s) among {res['canaries']['accounts_tried']} accounts tried", markup=False)
    for f in found:
        console.print(f"  {f['account_id']}  {f['mark_id']}  p <= {f['p_value']:.3g}", markup=False)
    console.print(f"RESULT watermark_p={wm['p_value']:.3g} canary_hits={len(found)}", markup=False)


@provenance_app.command("test")
def test_cmd(
    files: List[Path] = typer.Argument(..., help="Texts to score: .jsonl (a field, or OpenAI chat responses) or any other file as one text."),
    mark_key: Optional[Path] = typer.Option(None, "--mark-key", help="Mark key file (default $DG_MARK_KEY)."),
    key_id: Optional[str] = typer.Option(None, "--key-id", help="Key of the ring to test with (default: active)."),
    field: str = typer.Option("text", help="JSONL field holding the text."),
    gamma: float = typer.Option(0.25, help="Green share the watermark was served with."),
    evidence: Optional[Path] = typer.Option(None, "--evidence", help="Evidence log: test the canaries of every account it names."),
    account: Optional[List[str]] = typer.Option(None, "--account", help="Also test this account's canary (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the result as JSON (for `provenance export`)."),
) -> None:
    """Score texts (a suspect's outputs, a published data set) for the watermark and canaries."""
    from .canary import canary_for, find_canaries
    from .watermark import GreenList, score_texts

    ring = _keys(mark_key)
    if not 0 < gamma < 1:
        _fail("gamma must be in (0, 1)")
    try:
        key = ring.key(key_id)
    except KeyError:
        _fail(f"no key {key_id!r} in the mark key ring")
    kid = key_id or ring.active
    texts = _read_texts(files, field)
    accts = _accounts(evidence, account)
    wm = score_texts(texts, GreenList(key, gamma, kid))
    found = find_canaries(texts, [canary_for(key, a, kid) for a in accts])
    res = {"source": ", ".join(str(f) for f in files), "key_id": kid, "texts": len(texts), "requests": 0,
           "watermark": wm.as_dict(), "canaries": {"accounts_tried": len(accts), "found": found}}
    _show(res)
    if out:
        out.write_text(json.dumps(res, indent=1) + "\n")


@provenance_app.command("probe")
def probe_cmd(
    endpoint: str = typer.Option(..., "--endpoint", help="Base URL of an OpenAI-compatible API (…/v1 or its root)."),
    model: str = typer.Option(..., "--model", help="Model name to ask for."),
    mark_key: Optional[Path] = typer.Option(None, "--mark-key", help="Mark key file (default $DG_MARK_KEY)."),
    evidence: Optional[Path] = typer.Option(None, "--evidence", help="Evidence log: probe the canaries of the accounts it names."),
    account: Optional[List[str]] = typer.Option(None, "--account", help="Also probe this account's canary (repeatable)."),
    api_key_env: str = typer.Option("SUSPECT_API_KEY", help="Environment variable holding the suspect API's key, if any."),
    max_requests: int = typer.Option(200, help="Requests in all (canaries + watermark prompts)."),
    rate: float = typer.Option(2.0, help="Requests per second, at most."),
    max_tokens: int = typer.Option(256, help="max_tokens of each request."),
    gamma: float = typer.Option(0.25, help="Green share the watermark was served with."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the result as JSON (for `provenance export`)."),
) -> None:
    """Query a suspect model with canary triggers and watermark-reading prompts; report p-values and accounts."""
    import os

    from .experiment import load_corpus

    try:
        from .probe import ProbeConfig, probe
    except ImportError as e:
        _fail(f"probe needs the optional extra: pip install 'distillguard[provenance]' ({e})")

    if not endpoint.startswith(("http://", "https://")):
        _fail("--endpoint must be an http(s) URL")
    if max_requests < 1 or rate <= 0 or max_tokens < 1 or not 0 < gamma < 1:
        _fail("--max-requests and --max-tokens must be >= 1, --rate > 0, --gamma in (0, 1)")
    ring = _keys(mark_key)
    accts = _accounts(evidence, account)
    _, prompts, _ = load_corpus()
    res = probe(endpoint, model, ring.key(), ring.active, accts, prompts,
                api_key=os.environ.get(api_key_env), cfg=ProbeConfig(max_requests=max_requests, rate_per_s=rate,
                                                                     max_tokens=max_tokens, gamma=gamma))
    if res["requests"] and res["failed_requests"] == res["requests"]:
        _fail(f"every request to {endpoint} failed ({res['requests']}): is the endpoint an OpenAI-compatible API serving {model!r}?", 1)
    console.print(f"{res['requests']} requests ({res['failed_requests']} failed) in {res['seconds']} s", markup=False)
    _show(res)
    if out:
        out.write_text(json.dumps(res, indent=1) + "\n")


@provenance_app.command("verify-log")
def verify_log(
    log: Path = typer.Argument(..., help="Evidence log (JSONL, hash-chained)."),
    expect_head: Optional[str] = typer.Option(None, "--expect-head", help="A head published earlier: detects entries cut off the end."),
) -> None:
    """Check the evidence log's hash chain; exit 1 at the first edited, removed or reordered entry."""
    from .evidence import verify

    if not log.is_file():
        _fail(f"no such file: {log}")
    v = verify(log, expect_head)
    if v.ok:
        console.print(f"OK {v.entries} entries, head {v.head}", markup=False)
        return
    console.print(f"BROKEN at line {v.line}: {v.problem} ({v.entries} entries verified before it)", style="red", markup=False)
    raise typer.Exit(1)


@provenance_app.command("export")
def export_cmd(
    result: Path = typer.Argument(..., help="A result JSON of `provenance test --out` or `probe --out`."),
    out: Path = typer.Option(..., "--out", help="Where to write the STIX 2.1 bundle."),
    coalition_key: Optional[Path] = typer.Option(None, "--coalition-key", help="Coalition key file (default $DG_COALITION_KEY)."),
    provider: str = typer.Option(..., "--provider", help="This provider's name (the report's author)."),
    tlp: str = typer.Option("amber", help="TLP 2.0 level of the bundle."),
) -> None:
    """Export a provenance result as STIX 2.1 for partners (accounts only as coalition-key HMACs)."""
    from ..share import stix
    from ..share.keys import KeyRing
    from .stix_export import provenance_bundle

    try:
        res = json.loads(result.read_text())
        ring = KeyRing.load(coalition_key)
        b = provenance_bundle(res, ring, provider, tlp)
    except (OSError, ValueError, KeyError, TypeError) as e:
        _fail(str(e))
    out.write_text(stix.dumps(b))
    console.print(f"bundle: {out} ({len(b['objects'])} objects)", markup=False)


@provenance_app.command("experiment")
def experiment_cmd(
    small: bool = typer.Option(False, "--small", help="The CI-sized run: shares 5 % and 100 %, 12 controls (about 40 s)."),
    controls: Optional[int] = typer.Option(None, help="Control runs (default 100; 12 with --small)."),
    seed: int = typer.Option(7),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the full results as JSON."),
) -> None:
    """Teacher -> marked harvest -> students (5/20/100 % marked) and controls; power and false-positive rate."""
    from dataclasses import replace

    from .experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig.small() if small else ExperimentConfig()
    cfg = replace(cfg, seed=seed, **({"controls": controls} if controls is not None else {}))
    if cfg.controls < 1:
        _fail("--controls must be at least 1")
    res = run_experiment(cfg, lambda m: console.print(m, markup=False))
    t = Table(title=f"students (gamma {cfg.gamma}, delta {cfg.delta}; {res['corpus']})")
    for c in ("marked share", "API p-value", "reading p-value", "accounts named by canaries"):
        t.add_column(c)
    for r in res["students"]:
        fmt = lambda d: f"{d['p_value']:.2g}" if d["p_value"] > 0 else f"<= 1e{d['log10_p']:.0f}"  # noqa: E731
        t.add_row(f"{r['share']:.0%}", fmt(r["api"]), fmt(r["reading"]), ", ".join(sorted(r["canary_hits"])) or "-")
    console.print(t)
    c = res["controls"]
    t = Table(title=f"false-positive rate over {c['runs']} control students (each its own key)")
    t.add_column("test")
    for a in cfg.levels:
        t.add_column(f"p < {a:g}", justify="right")
    for mode, label in (("api", "API, de-duplicated"), ("reading", "reading mode"), ("api_no_dedup", "API, not de-duplicated")):
        t.add_row(label, *[f"{c['false_positive_rate'][mode][str(a)]:.3f}" for a in cfg.levels])
    console.print(t)
    console.print(f"canary false hits in controls: {c['canary_false_hits']}; {res['seconds']} s", markup=False)
    if out:
        out.write_text(json.dumps(res, indent=1, default=float) + "\n")
