"""Private set intersection (OpenMined ``openmined.psi``): how many identifiers two providers
share, without either learning the other's other identifiers.

The items are coalition-keyed hashes (:mod:`.keys`), so both sides canonicalise the same way;
PSI on top means that even key holders reveal only the size of the overlap. Protocol (the
client learns the size; the server learns nothing)::

    client: key, request = psi_request(items)              -> send request
    server: setup, response = psi_respond(items, request)  -> send setup, response
    client: n = psi_size(key, setup, response)

Messages are protobuf bytes. ``psi_overlap`` runs both roles locally (tests, demos).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import polars as pl

from .keys import KeyRing
from .observe import IDENTIFIER_KINDS, identifier_rows


def _psi():
    try:
        import private_set_intersection.python as psi
    except ImportError as e:  # pragma: no cover - optional dependency
        raise RuntimeError("private set intersection needs the 'openmined.psi' package (pip install 'distillguard[share]')") from e
    return psi


def psi_request(items: Sequence[str]) -> tuple[bytes, bytes]:
    """Client step 1: (private key to keep, request to send)."""
    psi = _psi()
    c = psi.client.CreateWithNewKey(False)
    return bytes(c.GetPrivateKeyBytes()), c.CreateRequest(sorted(set(items))).SerializeToString()


def psi_respond(items: Sequence[str], request: bytes, fpr: float = 1e-9) -> tuple[bytes, bytes]:
    """Server step: (setup, response) for the client's request; the server learns nothing."""
    psi = _psi()
    s = psi.server.CreateWithNewKey(False)
    req = psi.Request()
    req.ParseFromString(request)
    n_client = max(1, len(req.encrypted_elements))
    setup = s.CreateSetupMessage(fpr, n_client, sorted(set(items)), psi.DataStructure.GCS)
    return setup.SerializeToString(), s.ProcessRequest(req).SerializeToString()


def psi_size(client_key: bytes, setup: bytes, response: bytes) -> int:
    """Client step 2: the size of the intersection."""
    psi = _psi()
    c = psi.client.CreateFromKey(client_key, False)
    st, rs = psi.ServerSetup(), psi.Response()
    st.ParseFromString(setup)
    rs.ParseFromString(response)
    return int(c.GetIntersectionSize(st, rs))


def psi_overlap(client_items: Iterable[str], server_items: Iterable[str], fpr: float = 1e-9) -> int:
    """Both roles in one process: the intersection size of two item sets."""
    a, b = sorted(set(client_items)), sorted(set(server_items))
    if not a or not b:
        return 0
    key, req = psi_request(a)
    setup, resp = psi_respond(b, req, fpr)
    return psi_size(key, setup, resp)


def identifier_set(obs: pl.DataFrame, key: KeyRing, *, accounts: Iterable[str] | None = None,
                   kinds: Sequence[str] = IDENTIFIER_KINDS) -> list[str]:
    """Keyed hashes (active key) of the identifiers used by ``accounts`` (default: all), as
    ``kind:hmac`` items for PSI."""
    rows = identifier_rows(obs, kinds)
    if accounts is not None:
        rows = rows.filter(pl.col("account_id").is_in(list(accounts)))
    h = key.hasher()
    return sorted({f"{k}:{h.raw(k, v)}" for k, v in rows.select("kind", "value").unique().iter_rows()})
