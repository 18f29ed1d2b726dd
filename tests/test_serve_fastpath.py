"""The decision lookup written from uvicorn's protocol callbacks answers byte for byte what the
ordinary ASGI path answers (bar the ``date`` header), over keep-alive, pipelining and HTTP/1.0."""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httptools")
import uvicorn  # noqa: E402

from distillguard.serve.app import build_service, create_app  # noqa: E402
from distillguard.serve.auth import TokenAuth  # noqa: E402
from distillguard.serve.config import ServeConfig  # noqa: E402
from distillguard.serve.fastpath import decision_protocol  # noqa: E402
from serve_util import TOKENS, free_port, lines_of, sim_and_scan  # noqa: E402

DECIDE = b"Authorization: Bearer tok-decide-0001\r\n"
INGEST = b"Authorization: Bearer tok-ingest-0001\r\n"
ADMIN = b"Authorization: Bearer tok-admin-00001\r\n"


class Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app, **kw):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    server_header=False, **kw))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)


def request(method: str, path: str, headers: bytes = b"", body: bytes = b"", version: str = "1.1") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: t\r\n".encode() + headers
    if body:
        head += b"content-length: " + str(len(body)).encode() + b"\r\n"
    return head + b"\r\n" + body


def read_response(f, head_only: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.rstrip(b"\r\n").partition(b":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get(b"content-length", b"0"))
    body = b"" if head_only else f.read(n)
    headers.pop(b"date", None)
    return status, headers, body


def exchange(port: int, data: bytes, heads: list[bool]) -> tuple[list, bool]:
    """Send ``data`` at once; read one response per entry of ``heads`` (True: a HEAD response);
    also say whether the server closed the connection afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        f = s.makefile("rb")
        out = [read_response(f, h) for h in heads]
        s.settimeout(0.5)
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
    return out, closed


class CountLookups:
    """ASGI wrapper counting the decision lookups that reach the ASGI app."""

    def __init__(self, app):
        self.app, self.lookups = app, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/decisions/"):
            self.lookups += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The same service behind the decision protocol (engine started) and plain httptools."""
    log, _ = sim_and_scan(tmp_path_factory)
    cfg = ServeConfig(state_dir=tmp_path_factory.mktemp("fastpath-state"), refresh_ms=60_000)
    service = build_service(cfg, TokenAuth(TOKENS))
    app = create_app(service)
    counted = CountLookups(app)
    with Server(counted, http=decision_protocol(service)) as fast, Server(app, http="httptools", lifespan="off") as plain:
        body = b"\n".join(lines_of(log)[:3000]) + b"\n"
        (st, _, _), = exchange(fast.port, request("POST", "/v1/events", INGEST, body), [False])[0]
        assert st == 200
        (st, _, _), = exchange(fast.port, request("POST", "/v1/admin/refresh", ADMIN), [False])[0]
        assert st == 200
        known = sorted(service.engine.decisions)[:2]
        assert known
        yield fast.port, plain.port, known, counted


def both(servers, data: bytes, heads: list[bool]):
    fast, plain = servers[:2]
    a, b = exchange(fast, data, heads), exchange(plain, data, heads)
    assert a == b
    return a


def test_a_known_account_is_answered_like_the_asgi_path(servers):
    acct, counted = servers[2][0], servers[3]
    before = counted.lookups
    [(status, headers, body)], closed = both(servers, request("GET", f"/v1/decisions/{acct}", DECIDE), [False])
    assert status == 200 and not closed
    assert counted.lookups == before  # answered by the protocol, not through ASGI
    assert headers[b"content-type"] == b"application/json"
    doc = orjson.loads(body)
    assert doc["account_id"] == acct and doc["action"] in {"none", "monitor", "challenge", "throttle", "suspend"}


@pytest.mark.parametrize("path, headers, status", [
    ("/v1/decisions/no%20such%2Faccount%3F", DECIDE, 404),  # percent-decoded like uvicorn does
    ("/v1/decisions/x?flagged=true", DECIDE, 404),
    ("/v1/decisions/x", b"", 401),
    ("/v1/decisions/x", b"Authorization: Bearer not-a-token\r\n", 401),
    ("/v1/decisions/x", INGEST, 403),
])
def test_misses_and_refusals_are_answered_like_the_asgi_path(servers, path, headers, status):
    [(st, hdrs, body)], _ = both(servers, request("GET", path, headers), [False])
    assert st == status
    if status == 401:
        assert hdrs[b"www-authenticate"].startswith(b"Bearer")
    if status == 404:
        assert orjson.loads(body)["known"] is False


def test_head_keep_alive_and_pipelining_keep_order(servers):
    (a, b), counted = servers[2], servers[3]
    before = counted.lookups
    data = (request("GET", f"/v1/decisions/{a}", DECIDE) + request("HEAD", f"/v1/decisions/{b}", DECIDE)
            # a slow (ASGI) request, then a lookup pipelined behind it: answered after it, in order
            + request("POST", "/v1/events", INGEST, b"{}\n") + request("GET", f"/v1/decisions/{b}", DECIDE)
            + request("GET", "/healthz"))
    out, closed = both(servers, data, [False, True, False, False, False])
    assert [r[0] for r in out] == [200, 200, 200, 200, 200]
    assert orjson.loads(out[0][2])["account_id"] == a and out[1][2] == b""
    assert orjson.loads(out[2][2])["rejected"] == 1
    assert orjson.loads(out[3][2])["account_id"] == b and "status" in orjson.loads(out[4][2])
    assert not closed
    assert counted.lookups == before + 1  # only the lookup queued behind the POST went through ASGI


def test_http_1_0_and_connection_close_end_the_connection(servers):
    a = servers[2][0]
    for data in (request("GET", f"/v1/decisions/{a}", DECIDE, version="1.0"),
                 request("GET", f"/v1/decisions/{a}", DECIDE + b"Connection: close\r\n")):
        [(st, hdrs, _)], closed = both(servers, data, [False])
        assert st == 200 and closed and hdrs.get(b"connection") == b"close"
