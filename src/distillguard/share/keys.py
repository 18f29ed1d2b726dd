"""The coalition key: identifiers leave a provider only as keyed hashes (HMAC-SHA256).

Every identifier a provider shares (payment fingerprint, e-mail domain, network prefix, ASN,
client string, prompt-signature band) is first put in a canonical form and then hashed with a
secret key that only coalition members hold::

    hmac_sha256(key, "dg-id-v1|" + kind + "|" + canonical(value)).hexdigest()

A partner holding the key computes the same hash from its own logs and compares; anyone
without the key (a leaked bundle, the TAXII host) learns nothing it could match, not even by
guessing common values. The key is never written into a bundle; a bundle names the key it used
(``key_id``) and carries a check value (an HMAC of a fixed text) so a partner can tell that it
holds the same key under that name.

Rotation: a :class:`KeyRing` holds several keys by id; exports use the ``active`` one, matching
uses whichever key each indicator names. Keep an old key in the ring until the indicators made
with it have expired (``valid_until``), then drop it.

Key file (JSON)::

    {"active": "2026-11", "keys": {"2026-11": "<secret>", "2026-10": "<older secret>"}}

A secret is hex (64 characters for 32 bytes), ``base64:...``, or any other text used as UTF-8
bytes. ``DG_COALITION_KEY`` (a secret) and ``DG_COALITION_KEY_ID`` can stand in for a file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ID_SCHEME = "dg-id-v1"
KINDS = ("payment", "email_domain", "ip_prefix", "asn", "client", "prompt_band")
_CHECK_TEXT = b"distillguard coalition key check v1"


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    s = secret.strip()
    if s.startswith("base64:"):
        return base64.b64decode(s[7:])
    if re.fullmatch(r"(?:[0-9a-fA-F]{2}){16,}", s):
        return bytes.fromhex(s)
    return s.encode("utf-8")


def canonical(kind: str, value) -> str | None:
    """The canonical text of one identifier (None when there is nothing to hash).

    - ``payment``: the opaque fingerprint, trimmed.
    - ``email_domain``: lower-case IDNA (punycode) form, no trailing dot.
    - ``ip_prefix``: an address is reduced to its /24 (IPv4) or /48 (IPv6) network in
      ``ipaddress`` canonical text (``203.0.113.0/24``, ``2001:db8:1::/48``); a network given
      as text is normalised the same way. An individual address is never hashed.
    - ``asn``: decimal integer text.
    - ``client``: the User-Agent / SDK string, trimmed, inner whitespace collapsed.
    - ``prompt_band``: a signature band key (see :mod:`.signature`), lower-case hex.
    """
    if value is None:
        return None
    if kind == "asn":
        try:
            return str(int(value))
        except (TypeError, ValueError):
            return None
    v = str(value).strip()
    if not v:
        return None
    if kind == "payment":
        return v
    if kind == "email_domain":
        v = unicodedata.normalize("NFKC", v).lower().rstrip(".")
        if "@" in v:
            v = v.rsplit("@", 1)[1]
        try:
            return v.encode("idna").decode("ascii")
        except UnicodeError:
            return v
    if kind == "ip_prefix":
        return ip_prefix(v)
    if kind == "client":
        return " ".join(v.split())
    if kind == "prompt_band":
        return v.lower()
    raise ValueError(f"unknown identifier kind {kind!r}")


def ip_prefix(text: str) -> str | None:
    """/24 (IPv4) or /48 (IPv6) network of an address, canonical text; None if not an IP."""
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            addr = net.network_address
        else:
            addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


@dataclass
class KeyRing:
    """Coalition keys by id; ``active`` names the one used to export."""

    keys: dict[str, bytes] = field(default_factory=dict)
    active: str = ""

    def __post_init__(self):
        self.keys = {str(k): _secret_bytes(v) for k, v in self.keys.items()}
        if not self.active and len(self.keys) == 1:
            self.active = next(iter(self.keys))
        if self.keys and self.active not in self.keys:
            raise ValueError(f"active key {self.active!r} is not in the ring")
        for kid, k in self.keys.items():
            if len(k) < 16:
                raise ValueError(f"coalition key {kid!r} is shorter than 16 bytes")

    @classmethod
    def from_secret(cls, secret: str | bytes, key_id: str = "default") -> "KeyRing":
        return cls({key_id: _secret_bytes(secret)}, key_id)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "KeyRing":
        """From a key file (see module doc), else ``$DG_COALITION_KEY``; ValueError if neither."""
        if path is not None:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(dict(d["keys"]), str(d.get("active", "")))
        env = os.environ.get("DG_COALITION_KEY")
        if env:
            return cls.from_secret(env, os.environ.get("DG_COALITION_KEY_ID", "default"))
        raise ValueError("no coalition key: pass --key FILE or set DG_COALITION_KEY")

    @staticmethod
    def generate_file(path: str | Path, key_id: str, previous: str | Path | None = None) -> "KeyRing":
        """Write a key file with a fresh 32-byte key as ``active`` (rotation keeps the old keys)."""
        keys: dict[str, str] = {}
        if previous is not None and Path(previous).exists():
            keys = dict(json.loads(Path(previous).read_text(encoding="utf-8"))["keys"])
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} already exists")
        keys[key_id] = secrets.token_hex(32)
        p = Path(path)
        p.write_text(json.dumps({"active": key_id, "keys": keys}, indent=2) + "\n", encoding="utf-8")
        try:
            os.chmod(p, 0o600)
        except OSError:  # pragma: no cover - platform without chmod
            pass
        return KeyRing(keys, key_id)

    def key(self, key_id: str | None = None) -> bytes:
        kid = key_id or self.active
        if kid not in self.keys:
            raise KeyError(kid)
        return self.keys[kid]

    def check_value(self, key_id: str | None = None) -> str:
        """A public value that tells key holders they share the key named ``key_id``."""
        return hmac.new(self.key(key_id), _CHECK_TEXT, hashlib.sha256).hexdigest()[:32]

    def hasher(self, key_id: str | None = None) -> "Hasher":
        return Hasher(self.key(key_id))


class Hasher:
    """Keyed hashes of canonical identifiers, with a per-value cache."""

    def __init__(self, key: bytes):
        self._key = key
        self._cache: dict[tuple[str, str], str] = {}

    def raw(self, kind: str, canon: str) -> str:
        """HMAC of an already-canonical value."""
        k = (kind, canon)
        h = self._cache.get(k)
        if h is None:
            msg = f"{ID_SCHEME}|{kind}|{canon}".encode("utf-8")
            h = hmac.digest(self._key, msg, "sha256").hex()
            if len(self._cache) < 2_000_000:
                self._cache[k] = h
        return h

    def __call__(self, kind: str, value) -> str | None:
        c = canonical(kind, value)
        return None if c is None else self.raw(kind, c)
