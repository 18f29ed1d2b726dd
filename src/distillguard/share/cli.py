"""``distillguard share ...``: coalition exchange of distillation indicators (STIX 2.1 / TAXII 2.1).

The main CLI mounts this with ``app.add_typer(share_app, name="share")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

share_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                        help="Share distillation indicators with partner providers (STIX 2.1 over TAXII 2.1).")
console = Console()


@share_app.callback()
def _share_needs_extra(ctx: typer.Context) -> None:
    """Coalition exchange: STIX 2.1 indicators over TAXII 2.1 (needs the `share` extra)."""
    from ..errors import require_extra

    if ctx.invoked_subcommand != "keygen":  # keygen needs nothing beyond the core
        require_extra("share")

KeyOpt = typer.Option(None, "--key", "-k", help="Coalition key file (JSON; see docs/sharing.md). Default: $DG_COALITION_KEY.")


def _ring(key: Optional[Path]):
    from .keys import KeyRing

    try:
        return KeyRing.load(key)
    except (ValueError, OSError, KeyError) as e:
        from ..errors import UserError

        raise UserError(f"coalition key: {e}") from e


def _objects(bundles) -> list[dict]:
    """Partner bundles' objects; a bundle over the limits or unreadable ends in one line, exit 2."""
    from .stix import load_objects

    from ..errors import UserError

    try:
        return load_objects(bundles)
    except (ValueError, OSError) as e:
        raise UserError(f"partner bundle: {e}", "check the bundle (see docs/sharing.md for its limits)") from e


def _ts_ms(text: Optional[str]) -> Optional[int]:
    if not text:
        return None
    from ..errors import UserError
    from .stix import ms

    try:
        return int(text) if text.isdigit() else ms(text)
    except ValueError as e:
        raise UserError(f"{text!r} is not a time", "write RFC 3339 (2026-11-02T12:00:00Z) or epoch milliseconds") from e


def _password(password: Optional[str]) -> Optional[str]:
    return password if password is not None else os.environ.get("DG_TAXII_PASSWORD")


@share_app.command()
def keygen(out: Path = typer.Option(..., "--out", "-o", help="Key file to write."),
           key_id: str = typer.Option(..., "--key-id", help="Name of the new key, e.g. 2026-11."),
           previous: Optional[Path] = typer.Option(None, help="Existing key file: its keys are kept (rotation).")) -> None:
    """Create (or rotate) a coalition key file: a fresh 32-byte key becomes the active one."""
    from .keys import KeyRing

    ring = KeyRing.generate_file(out, key_id, previous)
    console.print(f"wrote {out}: active key {ring.active!r}, {len(ring.keys)} key(s); check value {ring.check_value()}", markup=False)


@share_app.command()
def export(
    scan_dir: Path = typer.Argument(..., help="A distillguard scan output directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle file to write (JSON)."),
    key: Optional[Path] = KeyOpt,
    provider: str = typer.Option(..., help="Your organisation's name (the bundle's identity)."),
    tlp: str = typer.Option("amber", help="TLP 2.0 level: clear, green, amber, amber+strict, red."),
    events: Optional[List[str]] = typer.Option(None, help="The log the scan read (default: summary.json 'inputs')."),
    as_of: Optional[str] = typer.Option(None, help="Export time (RFC 3339 or epoch ms; default: end of the log)."),
    latency_minutes: float = typer.Option(0.0, help="Sharing delay added to every indicator's valid_from."),
    singletons: bool = typer.Option(True, help="Also export flagged accounts that belong to no cluster."),
    rules: Optional[Path] = typer.Option(None, help="The rules directory the scan used (default: packaged rules)."),
    validate: bool = typer.Option(True, help="Validate the bundle with the OASIS stix2-validator."),
) -> None:
    """Export a scan's flagged campaigns as a STIX 2.1 bundle (identifiers only as coalition-keyed hashes)."""
    from ..errors import need_dir
    from ..ui import step
    from .export import ExportConfig, export_bundle, write_bundle
    from .stix import validate as run_validate

    need_dir(scan_dir, "scan directory", "SCAN_DIR (the --out directory of 'distillguard scan')")
    ring, as_of_ms = _ring(key), _ts_ms(as_of)
    with step("exporting indicators (reads the scanned log again)"):
        b, stats = export_bundle(scan_dir, ring, events=events or None, as_of_ms=as_of_ms, rules_dir=rules,
                                 config=ExportConfig(provider=provider, tlp=tlp, include_singletons=singletons,
                                                     latency_ms=int(latency_minutes * 60_000)))
    write_bundle(b, out)
    console.print(f"wrote {out}: {len(b['objects'])} objects, {stats['campaigns']} campaign(s), indicators {stats['indicators']}", markup=False)
    if validate:
        with step("validating with the OASIS stix2-validator"):
            ok, msgs = run_validate(b)
        for m in msgs[:20]:
            console.print(m, markup=False)
        if not ok:
            console.print("bundle does NOT validate", style="red", markup=False)
            raise typer.Exit(1)
        console.print("stix2-validator: valid", markup=False)


@share_app.command()
def validate(bundles: List[Path] = typer.Argument(...), strict: bool = typer.Option(True)) -> None:
    """Validate bundle files with the OASIS stix2-validator."""
    from ..errors import need_file
    from ..ui import step
    from .stix import validate as run_validate

    for p in bundles:
        need_file(p, "bundle", "the BUNDLES arguments")
    bad = 0
    for p in bundles:
        with step(f"validating {p} with the OASIS stix2-validator"):
            ok, msgs = run_validate(p.read_text(encoding="utf-8"), strict=strict)
        console.print(f"{p}: {'valid' if ok else 'INVALID'}", markup=False)
        for m in msgs[:20]:
            console.print("  " + m, markup=False)
        bad += not ok
    raise typer.Exit(1 if bad else 0)


@share_app.command()
def publish(
    bundles: List[Path] = typer.Argument(..., help="Bundle files to publish."),
    url: str = typer.Option(..., help="TAXII 2.1 API root URL."),
    collection: str = typer.Option(..., help="Collection id or title."),
    user: Optional[str] = typer.Option(None), password: Optional[str] = typer.Option(None, help="Default: $DG_TAXII_PASSWORD."),
    token: Optional[str] = typer.Option(None, help="Bearer token instead of user/password (default: $DG_TAXII_TOKEN)."),
    insecure: bool = typer.Option(False, help="Do not verify TLS certificates."),
    extension_definitions: bool = typer.Option(True, help="Send the extension-definition objects (medallion <= 3.0.0 "
                                               "cannot list them: use --no-extension-definitions there; pull restores them)."),
) -> None:
    """Publish bundles to a TAXII 2.1 collection."""
    from .stix import load_objects
    from .taxii import publish as run_publish

    res = run_publish(load_objects(bundles), url, collection, user=user, password=_password(password),
                      token=token or os.environ.get("DG_TAXII_TOKEN"), verify=not insecure,
                      include_extension_definitions=extension_definitions)
    console.print_json(json.dumps({k: v for k, v in res.items() if k != "failed_ids"}))
    if res["failure"] > res["already_present_fixed"]:
        raise typer.Exit(1)


@share_app.command()
def pull(
    out: Path = typer.Option(..., "--out", "-o", help="Bundle file to write."),
    url: str = typer.Option(..., help="TAXII 2.1 API root URL."),
    collection: str = typer.Option(..., help="Collection id or title."),
    user: Optional[str] = typer.Option(None), password: Optional[str] = typer.Option(None, help="Default: $DG_TAXII_PASSWORD."),
    token: Optional[str] = typer.Option(None, help="Bearer token (default: $DG_TAXII_TOKEN)."),
    added_after: Optional[str] = typer.Option(None, help="Only objects added after this time (RFC 3339)."),
    page_size: int = typer.Option(500, help="Objects per request (the server may cap it)."),
    max_pages: int = typer.Option(500, min=1, help="Stop with an error past this many pages (a server may never stop paging)."),
    insecure: bool = typer.Option(False, help="Do not verify TLS certificates."),
) -> None:
    """Pull a TAXII 2.1 collection into a bundle file."""
    from .taxii import pull as run_pull

    try:
        objs = run_pull(url, collection, out, user=user, password=_password(password), token=token or os.environ.get("DG_TAXII_TOKEN"),
                        verify=not insecure, added_after=added_after, per_request=page_size, max_pages=max_pages)
    except ValueError as e:
        from ..errors import UserError

        raise UserError(str(e)) from e
    console.print(f"wrote {out}: {len(objs)} objects", markup=False)


@share_app.command()
def match(
    bundles: List[Path] = typer.Argument(..., help="Partner bundle files."),
    events: List[str] = typer.Option(..., help="Your log (files, globs, directories)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for matches.csv, links.csv, sightings.json."),
    key: Optional[Path] = KeyOpt,
    scan_dir: Optional[Path] = typer.Option(None, "--scan", help="A scan of the same log: write OUT/accounts.csv with partner signals applied."),
    provider: Optional[str] = typer.Option(None, help="Your organisation's name: also write sightings.json for the partner."),
    tlp: str = typer.Option("amber"),
) -> None:
    """Match partner indicators against your log: matches, account links, sightings for the partner."""
    import polars as pl

    from .match import apply_matches, best_links, match_indicators, sightings_bundle
    from .observe import observe
    from .stix import dumps

    from ..ui import step

    ring, objects = _ring(key), _objects(bundles)  # key and bundles checked before the log is read
    out.mkdir(parents=True, exist_ok=True)
    info: dict = {}
    with step("matching partner indicators (reads the log)"):
        obs = observe(events)
        m = match_indicators(None, None, ring, objects=objects, obs=obs, info=info)
    m.write_csv(out / "matches.csv")
    links = best_links(m)
    links.with_columns(pl.col("indicator_ids").list.join(";")).write_csv(out / "links.csv")
    if provider:
        as_of = int(obs["ts"].max()) if obs.height else 0
        (out / "sightings.json").write_text(dumps(sightings_bundle(m, provider, as_of_ms=as_of, tlp=tlp, links=links)))
    if scan_dir is not None:
        raw = pl.read_csv(scan_dir / "accounts.csv", infer_schema=False)
        apply_matches(raw, m).write_csv(out / "accounts.csv")
    linked = links.filter(pl.col("link_ts").is_not_null())
    console.print(f"{info.get('indicators', 0)} live indicator(s); {m['account_id'].n_unique() if m.height else 0} account(s) matched, "
                  f"{linked.height} linked to a partner campaign, {linked.filter(pl.col('flag_ts').is_not_null()).height} flagged; "
                  f"skipped {({k: v for k, v in info.items() if k != 'indicators'})}", markup=False)


@share_app.command()
def sighting(
    matches_csv: Path = typer.Option(..., "--matches", help="matches.csv written by 'share match' (or partner_matches.csv of a scan)."),
    false_positive: List[str] = typer.Option(..., "--false-positive", help="Account an analyst found legitimate (repeatable)."),
    provider: str = typer.Option(..., help="Your organisation's name."),
    out: Path = typer.Option(..., "--out", "-o", help="Sighting bundle to write (publish it to the partner)."),
    when: Optional[str] = typer.Option(None, help="Time of the finding (RFC 3339; default: now)."),
    note: str = typer.Option("", help="Free text for the partner (no customer data)."),
    tlp: str = typer.Option("amber"),
) -> None:
    """False-positive sightings for the partner indicators that matched legitimate customers."""
    import time

    import polars as pl

    from .match import false_positive_bundle
    from .stix import dumps

    m = pl.read_csv(matches_csv, schema_overrides={"account_id": pl.String, "first_match_ts": pl.Int64, "last_match_ts": pl.Int64})
    b = false_positive_bundle(false_positive, m, provider, when_ms=_ts_ms(when) or int(time.time() * 1000), tlp=tlp, note=note)
    out.write_text(dumps(b), encoding="utf-8")
    n = sum(1 for o in b["objects"] if o["type"] == "sighting")
    console.print(f"wrote {out}: {n} false-positive sighting(s)", markup=False)


@share_app.command()
def revoke(
    bundle: Path = typer.Argument(..., help="Your own exported bundle(s) (the indicators to answer for)."),
    sightings: List[Path] = typer.Option(..., help="Sighting bundles received from partners."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle of revoked indicator versions to publish."),
    min_reports: int = typer.Option(1, help="False-positive sightings needed to revoke an indicator."),
    when: Optional[str] = typer.Option(None, help="Revocation time (default: now)."),
) -> None:
    """Revoke your indicators that partners reported as false positives (new STIX versions, revoked: true)."""
    import time

    from .match import revoke_for_false_positives
    from .stix import bundle as mk_bundle
    from .stix import dumps, load_objects

    new = revoke_for_false_positives(load_objects([bundle]), load_objects(sightings), when_ms=_ts_ms(when) or int(time.time() * 1000),
                                     min_reports=min_reports)
    out.write_text(dumps(mk_bundle(new, f"revoke|{len(new)}|{new[0]['modified'] if new else ''}")), encoding="utf-8")
    console.print(f"wrote {out}: {len(new)} revoked indicator(s)", markup=False)


@share_app.command()
def rules(bundles: List[Path] = typer.Argument(...), out: Path = typer.Option(..., "--out", "-o", help="Rules directory to write."),
          source: str = typer.Option("partner", help="Suffix for partner rules whose id clashes with a local one."),
          approve: List[str] = typer.Option([], "--approve", help="Partner rule id approved locally: its own level applies (repeatable)."),
          max_action: str = typer.Option("monitor", help="Most a partner rule alone may do unless approved: monitor or challenge."),
          policy: Optional[Path] = typer.Option(None, help="Policy YAML whose thresholds the sandbox uses (default: the packaged policy)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing: rescan the inputs of --scan with the partner rules and report the change."),
          scan_dir: Optional[Path] = typer.Option(None, "--scan", help="With --dry-run: a scan of your own log (its summary names the inputs)."),
          labels: Optional[Path] = typer.Option(None, help="With --dry-run: labels.csv (account_id,label) to report the benign-flag rate."),
          ) -> None:
    """Turn the detection-rule indicators of partner bundles into a rules directory for 'scan --rules'.

    Partner rules are sandboxed: alone, one reaches at most --max-action unless --approve'd.
    With --dry-run --scan DIR, the effect on your own flags is reported before any use."""
    import tempfile

    from ..scoring.policy import Policy
    from .rules import write_rules

    if max_action not in ("monitor", "challenge"):
        raise typer.BadParameter("--max-action must be monitor or challenge (approve a rule with --approve to go further)")
    pol = Policy.from_yaml(policy) if policy else None
    skipped: dict = {}
    if not dry_run:
        written = write_rules(_objects(bundles), out, source=source, approved=approve, max_action=max_action, policy=pol, skipped=skipped)
        console.print(f"wrote {len(written)} rule file(s) to {out}" + (f"; skipped {skipped}" if skipped else ""), markup=False)
        return
    if scan_dir is None:
        raise typer.BadParameter("--dry-run needs --scan DIR (a scan of your own log)")
    from .rules import rules_dry_run

    with tempfile.TemporaryDirectory(prefix="dg-rules-") as tmp:
        write_rules(_objects(bundles), tmp, source=source, approved=approve, max_action=max_action, policy=pol, skipped=skipped)
        try:
            r = rules_dry_run(scan_dir, tmp, labels=labels, policy_path=policy)
        except (ValueError, OSError, KeyError) as e:
            from ..errors import UserError

            raise UserError(str(e)) from e
    line = (f"dry run: flagged {r['flagged_before']} -> {r['flagged_after']} of {r['accounts']} account(s) "
            f"({r['newly_flagged']} newly flagged, {r['unflagged']} no longer)")
    if r.get("benign") is not None:
        line += (f"; benign flagged {r['benign_flagged_before']} -> {r['benign_flagged_after']} of {r['benign']} "
                 f"({r['benign_flag_rate_before']:.2%} -> {r['benign_flag_rate_after']:.2%})")
    console.print(line + (f"; skipped {skipped}" if skipped else ""), markup=False, soft_wrap=True)


@share_app.command("psi-request")
def psi_request_cmd(items: Path = typer.Argument(..., help="Your items, one per line (e.g. from 'share psi-items')."),
                    state: Path = typer.Option(..., help="Where to keep your private PSI key (do not send it)."),
                    out: Path = typer.Option(..., "--out", "-o", help="Request to send to the partner.")) -> None:
    """PSI, client step 1: a request for the partner (who learns nothing)."""
    from .psi import psi_request

    key, req = psi_request([x for x in items.read_text().split() if x])
    state.write_bytes(key)
    out.write_bytes(req)
    console.print(f"wrote {out} ({len(req)} bytes); keep {state} private", markup=False)


@share_app.command("psi-respond")
def psi_respond_cmd(items: Path = typer.Argument(..., help="Your items, one per line."),
                    request: Path = typer.Option(..., help="The partner's request."),
                    out: Path = typer.Option(..., "--out", "-o", help="Response file (setup + response) to send back.")) -> None:
    """PSI, server step: answer a partner's request (you learn nothing; they learn the overlap size)."""
    from .psi import psi_respond

    setup, resp = psi_respond([x for x in items.read_text().split() if x], request.read_bytes())
    out.write_text(json.dumps({"setup": setup.hex(), "response": resp.hex()}))
    console.print(f"wrote {out}", markup=False)


@share_app.command("psi-size")
def psi_size_cmd(state: Path = typer.Option(..., help="Your private PSI key from psi-request."),
                 response: Path = typer.Option(..., help="The partner's response file.")) -> None:
    """PSI, client step 2: print how many of your items the partner also holds."""
    from .psi import psi_size

    d = json.loads(response.read_text())
    console.print(str(psi_size(state.read_bytes(), bytes.fromhex(d["setup"]), bytes.fromhex(d["response"]))), markup=False)


@share_app.command("psi-items")
def psi_items_cmd(scan_dir: Path = typer.Argument(..., help="A scan directory (its flagged accounts' identifiers are listed)."),
                  out: Path = typer.Option(..., "--out", "-o"), key: Optional[Path] = KeyOpt,
                  all_accounts: bool = typer.Option(False, help="Every account's identifiers, not only flagged ones.")) -> None:
    """Write the coalition-keyed hashes of your (flagged accounts') identifiers, one per line, for PSI."""
    import polars as pl

    from .observe import inputs_of_scan, observe
    from .psi import identifier_set
    from .report_io import read_accounts

    acc = read_accounts(scan_dir)
    ids = None if all_accounts else acc.filter(pl.col("flagged"))["account_id"].to_list()
    items = identifier_set(observe(inputs_of_scan(scan_dir)), _ring(key), accounts=ids)
    out.write_text("\n".join(items) + ("\n" if items else ""))
    console.print(f"wrote {out}: {len(items)} item(s)", markup=False)


@share_app.command()
def demo(out: Path = typer.Option(Path("share-demo"), "--out", "-o"), seed: int = typer.Option(7), hours: float = typer.Option(6.0),
         scale: float = typer.Option(0.3), shift_hours: float = typer.Option(2.0), latency_minutes: float = typer.Option(15.0)) -> None:
    """Two providers, one campaign: B with A's indicators vs B alone (docs/sharing.md)."""
    from .demo import two_provider_demo

    r = two_provider_demo(out, seed=seed, hours=hours, scale=scale, shift_hours=shift_hours, latency_minutes=latency_minutes)
    a, w = r["B_alone"], r["B_with_A_indicators"]
    console.print(f"campaign {r['campaign']} at provider B ({a['accounts']} accounts, {a['exchanges']} exchanges):", markup=False)
    console.print(f"  alone:              first flag {a['first_flag']}, {a['harvested_before_flag']} exchanges harvested before flags", markup=False)
    console.print(f"  with A's indicators: first flag {w['first_flag']}, {w['harvested_before_flag']} exchanges harvested before flags", markup=False)
    console.print(f"  benign accounts of B linked by indicators: {r['B_benign_linked']} of {r['B_benign_accounts']} "
                  f"(flagged: {r['B_benign_flagged_by_indicators']})", markup=False)
    console.print(f"details: {out / 'demo.json'}", markup=False)
