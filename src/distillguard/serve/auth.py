"""Bearer tokens with scopes, from ``DISTILLGUARD_API_TOKENS``.

The variable holds comma-separated ``token:scope+scope`` entries, e.g.
``DISTILLGUARD_API_TOKENS="s3cr3t-gw:ingest+decide,s3cr3t-ops:admin"``. Scopes: ``ingest``
(POST exchanges), ``decide`` (read decisions), ``admin`` (everything, plus refresh and metrics).

Tokens are never logged, echoed or used as metric labels: only a fingerprint
(``tok-`` + the first 8 hex digits of the token's SHA-256) ever appears, and only in logs.
Parsing errors name the entry's position, not its text.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

ENV_VAR = "DISTILLGUARD_API_TOKENS"
SCOPES = ("ingest", "decide", "admin")


def fingerprint(token: str) -> str:
    return "tok-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class Principal:
    name: str  # the token's fingerprint
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` headers against the configured tokens."""

    def __init__(self, spec: str | None):
        self._entries: list[tuple[bytes, Principal]] = []
        for i, raw in enumerate((spec or "").split(",")):
            raw = raw.strip()
            if not raw:
                continue
            token, sep, scopes = raw.rpartition(":")
            if not sep or not token:
                raise ValueError(f"{ENV_VAR}: entry {i + 1} is not token:scope+scope")
            sc = frozenset(s.strip() for s in scopes.split("+") if s.strip())
            bad = sc - set(SCOPES)
            if not sc or bad:
                raise ValueError(f"{ENV_VAR}: entry {i + 1} has unknown or no scopes {sorted(bad)} (known: {', '.join(SCOPES)})")
            if len(token) < 8:
                raise ValueError(f"{ENV_VAR}: entry {i + 1} has a token shorter than 8 characters")
            self._entries.append((hashlib.sha256(token.encode("utf-8")).digest(), Principal(fingerprint(token), sc)))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "TokenAuth":
        return cls((env if env is not None else os.environ).get(ENV_VAR))

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def check(self, authorization: str | None) -> Principal | None:
        """The principal of a valid ``Bearer`` header, else None (constant time per entry)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        found = None
        for d, p in self._entries:
            if hmac.compare_digest(d, digest):
                found = p
        return found
