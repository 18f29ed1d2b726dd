"""Publish bundles to, and pull them from, a TAXII 2.1 server (``taxii2-client``).

Authentication: HTTP Basic (``user`` / ``password``) or a bearer token (``token``); TLS is
verified unless ``verify=False``. The server is addressed by its API root URL (for example
``https://taxii.example.org/coalition/``) and a collection id or title.

Known server bug: medallion (up to 3.0.0, the OASIS reference server) reads any object's
``version`` property as a timestamp when it lists objects, and ``extension-definition`` objects
have a ``version`` ("1.0.0"), so listing a collection that holds one fails with HTTP 500. Publish
to such a server with ``include_extension_definitions=False``; :func:`pull` puts distillguard's
fixed extension-definitions (and their author identity) back into every bundle it writes, so
pulled bundles stay complete either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import requests

from . import stix

CHUNK = 500  # objects per POST: stays well under common max_content_length settings


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str):
        self.token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def _collection(url: str, collection: str, *, user=None, password=None, token=None, verify=True):
    from taxii2client.v21 import ApiRoot

    auth = BearerAuth(token) if token else None
    api = ApiRoot(url if url.endswith("/") else url + "/", user=user, password=password, auth=auth, verify=verify)
    for c in api.collections:
        if collection in (c.id, c.title):
            return c
    raise LookupError(f"no collection {collection!r} at {url} (have: {', '.join(c.id + ' ' + repr(c.title) for c in api.collections)})")


def publish(objects: Iterable[dict] | str | Path, url: str, collection: str, *, user: str | None = None,
            password: str | None = None, token: str | None = None, verify: bool = True, timeout: int = 60,
            include_extension_definitions: bool = True) -> dict:
    """POST objects (or a bundle file) to the collection; returns success/failure counts."""
    if isinstance(objects, (str, Path)):
        objs = stix.load_objects([objects])
    else:
        objs = list(objects)
    if not include_extension_definitions:
        objs = [o for o in objs if o.get("type") != "extension-definition"]
    col = _collection(url, collection, user=user, password=password, token=token, verify=verify)
    if not col.can_write:
        raise PermissionError(f"collection {collection!r} is not writable for this user")
    res = {"objects": len(objs), "success": 0, "failure": 0, "pending": 0, "failed_ids": []}
    for i in range(0, len(objs), CHUNK):
        st = col.add_objects(json.dumps({"objects": objs[i:i + CHUNK]}), wait_for_completion=True, timeout=timeout)
        res["success"] += int(st.success_count or 0)
        res["failure"] += int(st.failure_count or 0)
        res["pending"] += int(st.pending_count or 0)
        res["failed_ids"] += [f.get("id") if isinstance(f, dict) else str(f) for f in (st.failures or [])]
    # A server refuses an object it already holds in that version (same id and modified): the
    # fixed objects every bundle carries are such re-sends, not failures of this publication.
    fixed = {o["id"] for o in stix.fixed_objects("clear")} | set(stix.TLP2_IDS.values())
    res["already_present_fixed"] = sum(1 for f in res["failed_ids"] if f in fixed)
    return res


def pull(url: str, collection: str, out: str | Path | None = None, *, user: str | None = None, password: str | None = None,
         token: str | None = None, verify: bool = True, added_after: str | None = None, per_request: int = 100,
         max_pages: int = 500, max_objects: int = stix.MAX_OBJECTS) -> list[dict]:
    """GET every object of the collection (newest versions), paging; optionally write a bundle.

    Raises ``ValueError`` past ``max_pages`` pages or ``max_objects`` objects."""
    from taxii2client.v21 import as_pages

    col = _collection(url, collection, user=user, password=password, token=token, verify=verify)
    if not col.can_read:
        raise PermissionError(f"collection {collection!r} is not readable for this user")
    kw = {"added_after": added_after} if added_after else {}
    objs: list[dict] = []
    # Partner servers are untrusted: a page count and an object count bound what one pull reads
    # (a server answering ``more: true`` forever would otherwise fill memory).
    for k, page in enumerate(as_pages(col.get_objects, per_request=per_request, **kw)):
        if k >= max_pages:
            raise ValueError(f"collection {collection!r}: more than {max_pages} pages; pull with --added-after, or raise --max-pages")
        items = page.get("objects", []) if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise ValueError(f"collection {collection!r}: a page's 'objects' is not a list")
        objs += [o for o in items if isinstance(o, dict)]
        if len(objs) > max_objects:
            raise ValueError(f"collection {collection!r}: more than {max_objects} objects (the limit of one pull)")
    objs = complete(objs)
    if out is not None:
        Path(out).write_text(stix.dumps(stix.bundle(objs, f"pull|{url}|{collection}|{len(objs)}")), encoding="utf-8")
    return objs


def complete(objs: list[dict]) -> list[dict]:
    """Add distillguard's fixed extension-definitions (and their author) when objects use them
    but the list lacks them."""
    have = {o.get("id") for o in objs}
    used = set()
    for o in objs:
        used.update((o.get("extensions") or {}).keys())
    extra = [e for e in (stix.EXT_OBSERVABLES, stix.EXT_PROPS) if e["id"] not in have and (e["id"] in used or e is stix.EXT_OBSERVABLES and used)]
    if extra and stix.DG_IDENTITY["id"] not in have:
        extra.insert(0, stix.DG_IDENTITY)
    return objs + extra


def medallion_data(collection_id: str, *, title: str = "distillguard coalition", api_root: str = "coalition",
                   host: str = "127.0.0.1", port: int = 5000) -> dict:
    """A minimal data file for an in-memory ``medallion`` TAXII 2.1 server (tests, local trials)."""
    base = f"http://{host}:{port}/{api_root}/"
    return {
        "/discovery": {"title": title, "description": "Distillation-defence indicator exchange", "default": base, "api_roots": [base]},
        api_root: {
            "information": {"title": title, "description": "STIX 2.1 indicators of distillation campaigns",
                            "versions": ["application/taxii+json;version=2.1"], "max_content_length": 104857600},
            "status": [],
            "collections": [{"id": collection_id, "title": "indicators", "description": "Shared distillation indicators and sightings",
                             "can_read": True, "can_write": True, "media_types": ["application/stix+json;version=2.1"],
                             "objects": [], "manifest": []}],
        },
    }
