"""``GET /v1/decisions/{account_id}``: the gateway's per-request call, answered without routing.

One function, :func:`decision_response`, decides what the answer is (token check, ``decide``
scope, the engine's pre-serialised decision or a 404). Two front ends call it:

* :class:`DecisionFastPath`, an ASGI wrapper in front of the FastAPI app: any ASGI server and the
  test client take this path;
* :func:`decision_protocol`, a subclass of uvicorn's httptools protocol that answers the request
  from the parser's callbacks with one socket write, without an ASGI task. ``distillguard serve``
  runs with it. Measured on the 2-core VM under ``hey``'s bursty 2,000 GET/s: uvicorn's ASGI
  cycle costs ~125 µs of CPU per request by itself (a task, an event, two writes), the lookup
  ~5–10 µs, and bursts of 20 requests queue on the one event loop (docs/serve.md).

Everything else (other paths, a lookup pipelined behind a request still in progress, a client
that is not reading its answers) goes the ordinary way, so the protocol changes only how this one answer is written.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import orjson

log = logging.getLogger("distillguard.serve")

PREFIX = "/v1/decisions/"
_JSON = (b"content-type", b"application/json")
_UNAUTHENTICATED = (401, b'{"detail":"missing or invalid bearer token"}', [(b"www-authenticate", b'Bearer realm="distillguard"')])
_FORBIDDEN = (403, b'{"detail":"token lacks the \'decide\' scope"}', [])


def authorization_of(headers) -> bytes | None:
    """The ``authorization`` value of ASGI-style ``(lower-case name, value)`` header pairs, or None."""
    for k, v in headers:
        if k == b"authorization":
            return v
    return None


def decision_response(service: Any, account: str, authorization: bytes | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """``(status, body, extra headers)`` of ``GET /v1/decisions/{account}``.

    ``account`` is the path's (percent-decoded) rest after :data:`PREFIX`; ``authorization`` the
    raw header value, or None. The body of a known account is the engine's published JSON as is.
    """
    engine = service.engine
    auth = service.auth
    if auth is not None:
        p = auth.check(None if authorization is None else authorization.decode("latin-1"))
        if p is None:
            engine.metrics.auth_failures.labels("unauthenticated").inc()
            return _UNAUTHENTICATED
        if not p.allows("decide"):
            engine.metrics.auth_failures.labels("forbidden").inc()
            log.warning("token %s lacks scope decide for GET %s", p.name, PREFIX)
            return _FORBIDDEN
    body = engine.decisions.get(account)
    if body is None:
        engine.metrics.decision_lookups.labels("false").inc()
        return 404, orjson.dumps({"account_id": account, "action": "none", "known": False,
                                  "detail": "no exchanges of this account"}), []
    engine.metrics.decision_lookups.labels("true").inc()
    return 200, body, []


class DecisionFastPath:
    """ASGI wrapper answering ``GET /v1/decisions/{account_id}`` before FastAPI's router.

    Everything else goes to the FastAPI app (attribute access is forwarded, so ``.state`` etc.
    still work).
    """

    def __init__(self, app: Any, service: Any):
        self.app, self.service = app, service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        status, body, extra = decision_response(self.service, scope["path"][len(PREFIX):], authorization_of(scope["headers"]))
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def decision_protocol(service: Any) -> type:
    """A uvicorn ``http`` protocol class that writes decision answers from the parser callbacks.

    Pass it as ``uvicorn.run(app, http=decision_protocol(service))``. Requires httptools (part of
    ``uvicorn[standard]``); :func:`protocol_or_auto` falls back to ``"auto"`` without it.
    """
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    prefix = PREFIX.encode()
    cfg = service.engine.cfg
    refused = {"n": 0, "logged": 0.0}
    per_client: dict[str, int] = {}
    try:  # the cap leaves file descriptors for the store, logs and outgoing calls
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cap = cfg.max_connections if soft == resource.RLIM_INFINITY else max(16, min(cfg.max_connections, soft - 128))
    except (ImportError, ValueError, OSError):  # pragma: no cover - non-POSIX
        cap = cfg.max_connections

    class DecisionProtocol(HttpToolsProtocol):
        """Also bounds what a connection may hold: ``header_timeout_s`` to send the request line
        and headers (from connect, and for each keep-alive request), ``body_timeout_s`` for the
        body, at most ``max_connections`` open connections (and fewer than the process's file
        descriptor limit), at most ``max_connections_per_client`` from one address (uvicorn has
        neither timeout, so idle half-sent requests would otherwise hold file descriptors until
        the client leaves, and one client could take every slot)."""

        _fast: tuple[bytes, bool] | None = None  # (response bytes, keep-alive) of a request being read
        _read_timer: Any = None

        _host: str | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else "-"
            if len(self.connections) > cap or per_client.get(host, 0) >= cfg.max_connections_per_client:
                refused["n"] += 1
                now = self.loop.time()
                if now - refused["logged"] >= 10.0:
                    log.warning("connection cap reached (%d open, %d per client): %d connection(s) closed on arrival",
                                cap, cfg.max_connections_per_client, refused["n"])
                    refused["n"], refused["logged"] = 0, now
                transport.close()
                return
            self._host = host
            per_client[host] = per_client.get(host, 0) + 1
            self._arm(cfg.header_timeout_s)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(seconds, self._read_timeout)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timeout(self) -> None:
            self._read_timer = None
            if not self.transport.is_closing():
                log.debug("closing %s: request not received in time", self.client)
                self.transport.close()

        def connection_lost(self, exc) -> None:  # type: ignore[override]
            self._disarm()
            if self._host is not None:
                n = per_client.get(self._host, 1) - 1
                if n > 0:
                    per_client[self._host] = n
                else:
                    per_client.pop(self._host, None)
                self._host = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(cfg.header_timeout_s)

        def on_headers_complete(self) -> None:
            self._arm(cfg.body_timeout_s)
            method = self.parser.get_method()
            busy = self.cycle is not None and not self.cycle.response_complete
            # behind a request in progress, or with the client not reading: the ordinary (flow-controlled) way
            if method not in (b"GET", b"HEAD") or busy or self.pipeline or self.flow.write_paused or self.parser.should_upgrade():
                super().on_headers_complete()
                return
            raw_path = httptools.parse_url(self.url).path
            if not raw_path.startswith(prefix):
                super().on_headers_complete()
                return
            path = raw_path.decode("ascii")
            if "%" in path:
                path = urllib.parse.unquote(path)
            status, body, extra = decision_response(service, path[len(PREFIX):], authorization_of(self.headers))
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            out = [STATUS_LINE[status]]
            for name, value in (*self.server_state.default_headers, _JSON, *extra):
                out += [name, b": ", value, b"\r\n"]
            out += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
            if not keep_alive:
                out.append(b"connection: close\r\n")
            out.append(b"\r\n")
            if method == b"GET":
                out.append(body)
            self._fast = (b"".join(out), keep_alive)
            if self.access_log:
                self.access_logger.info('%s - "%s %s HTTP/%s" %d', "%s:%d" % self.client if self.client else "-",
                                        method.decode("ascii"), path, self.parser.get_http_version(), status)

        def on_body(self, body: bytes) -> None:
            if self._fast is None:
                super().on_body(body)  # a GET's body, if any, is read and dropped on the fast path

        def on_message_complete(self) -> None:
            self._disarm()
            if self._fast is None:
                super().on_message_complete()
                return
            data, keep_alive = self._fast
            self._fast = None
            self.transport.write(data)  # one write: status line, headers and body
            if not keep_alive:
                self.transport.close()
            self.on_response_complete()  # counts the request, arms keep-alive, starts pipelined requests

    return DecisionProtocol


def protocol_or_auto(service: Any) -> Any:
    """:func:`decision_protocol`, or uvicorn's ``"auto"`` where httptools is not installed."""
    try:
        return decision_protocol(service)
    except ImportError:  # pragma: no cover - uvicorn without the [standard] extra
        return "auto"
