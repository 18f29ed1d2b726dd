"""The provider's private mark key.

Marks are keyed so that only their owner can find them and so that a hit names an account: a
canary is an HMAC of the account under this key, the watermark's green lists a keyed hash. The key
is the provider's own, never the coalition key (partners must not be able to strip or forge
marks); it uses the coalition key's file format and rotation (:class:`share.keys.KeyRing`)::

    {"active": "mk-2026-12", "keys": {"mk-2026-12": "<64 hex characters>"}}

``DG_MARK_KEY`` (a secret) and ``DG_MARK_KEY_ID`` can stand in for a file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # share/__init__ loads Polars; the plugin side reads keys without it when it can
    from ..share.keys import KeyRing

MARK_SCHEME = "dg-mark-v1"


def load_mark_keys(path: str | Path | None = None) -> "KeyRing":
    """The mark key ring from ``path``, else ``$DG_MARK_KEY``; ValueError if neither."""
    from ..share.keys import KeyRing

    if path is not None:
        return KeyRing.load(path)
    env = os.environ.get("DG_MARK_KEY")
    if env:
        return KeyRing.from_secret(env, os.environ.get("DG_MARK_KEY_ID", "default"))
    raise ValueError("no mark key: pass --mark-key FILE or set DG_MARK_KEY")


def derive(key: bytes, label: str, *parts: str) -> bytes:
    """A 32-byte value derived from the mark key for one purpose (``label``) and its inputs."""
    msg = "|".join((MARK_SCHEME, label, *parts)).encode("utf-8")
    return hmac.digest(key, msg, hashlib.sha256)
