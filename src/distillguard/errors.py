"""Errors a user can cause, and how the command line reports them.

Every command raises :class:`UserError` (or lets an ``OSError``, a missing optional module, a
Ctrl-C propagate); the CLI's root group (``cli.DistillguardGroup``) turns any of them into ONE
line on stderr and an exit code from the table below. A traceback is shown only with
``distillguard --debug ...`` or ``DISTILLGUARD_DEBUG=1``.

Exit codes (stable; scripts may rely on them):

==== =====================================================================================
0    the command did its work (``scan``: the input was scanned, some records were valid)
1    an internal error (a bug): one line, rerun with ``--debug`` for the traceback
2    a usage error: a wrong option, a missing or unreadable path, a missing optional extra
3    ``scan`` read no valid record (empty input, or every record quarantined); the report
     and quarantine.jsonl are still written
130  interrupted (Ctrl-C); ``scan`` leaves no partial report
==== =====================================================================================
"""

from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NO_VALID_RECORDS = 3
EXIT_INTERRUPTED = 130

DEBUG_ENV = "DISTILLGUARD_DEBUG"

# The optional extras and the modules each one brings (``pip install 'distillguard[extra]'``).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "httpx", "redis", "prometheus_client"),
    "console": ("fastapi", "uvicorn", "jinja2", "itsdangerous", "multipart"),
    "share": ("stix2", "stix2validator", "taxii2client"),
    "spark": ("pyspark", "pandas"),
}
# Module -> extra, the inverse of the table above (``serve`` wins for modules several extras bring).
_MODULE_EXTRA = {"private_set_intersection": "share", **{m: e for e, mods in reversed(EXTRA_MODULES.items()) for m in mods}}


class UserError(Exception):
    """A mistake the user can fix. ``str()`` says what was wrong; ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def line(self) -> str:
        return self.message + (f"; {self.hint}" if self.hint else "")


class NoValidRecords(UserError):
    """``scan`` finished but no record was valid: the report is written, the exit code says so."""

    def __init__(self, message: str):
        super().__init__(message, code=EXIT_NO_VALID_RECORDS)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def missing_extra_error(extra: str, missing: str) -> UserError:
    return UserError(f"this command needs the optional '{extra}' extra (module {missing!r} is not installed)",
                     f"install it with: pip install 'distillguard[{extra}]'")


def require_extra(extra: str) -> None:
    """Raise a one-line :class:`UserError` before any work when ``extra``'s modules are missing."""
    for mod in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_extra_error(extra, mod)


def explain(exc: BaseException) -> tuple[str, int]:
    """The one line (without the ``error:`` prefix) and the exit code for ``exc``."""
    if isinstance(exc, UserError):
        return exc.line(), exc.code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _MODULE_EXTRA:
        root = (exc.name or "").split(".")[0]
        return missing_extra_error(_MODULE_EXTRA[root], root).line(), EXIT_USAGE
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        what = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            return f"{where}no such file or directory; check the path", EXIT_USAGE
        if isinstance(exc, PermissionError):
            return f"{where}permission denied; choose a path you can read and write", EXIT_USAGE
        if isinstance(exc, IsADirectoryError):
            return f"{where}is a directory, a file was expected", EXIT_USAGE
        if isinstance(exc, NotADirectoryError):
            return f"{where}is a file, a directory was expected", EXIT_USAGE
        if exc.errno == errno.EADDRINUSE:
            return f"{where}address already in use; pick another --port or stop what listens there", EXIT_USAGE
        if exc.errno == errno.ENOSPC:
            return f"{where}no space left on device", EXIT_USAGE
        return f"{where}{what}", EXIT_USAGE
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return (f"internal error ({type(exc).__name__}{': ' + first if first else ''}); this is a bug: "
            f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it"), EXIT_INTERNAL


def one_line(text: str, limit: int = 400) -> str:
    """Collapse a message to one line of at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- checks run before any work -------------------------------------------------------------

def need_file(path: Path | str, what: str, option: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {p} does not exist", f"check {option}")
    if not p.is_file():
        raise UserError(f"{what} {p} is not a file", f"check {option}")
    if not os.access(p, os.R_OK):
        raise UserError(f"{what} {p} is not readable", f"check {option}")
    return p


def need_dir(path: Path | str, what: str, option: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {p} does not exist", f"check {option}")
    if not p.is_dir():
        raise UserError(f"{what} {p} is not a directory", f"check {option}")
    return p


def writable_dir(path: Path | str, what: str, option: str) -> Path:
    """``path`` is, or can be created as, a directory this process may write into."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {p} exists and is not a directory", f"choose another {option}")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {p} cannot be written ({probe} is not a writable directory)", f"choose another {option}")
    return p


def parse_size(text: str, option: str = "--memory-limit") -> str:
    """Check a DuckDB size such as ``1GB``, ``512MB``, ``2GiB`` and return it normalised."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", text or "", re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"{option} {text!r} is not a size", "write it as a number and a unit, e.g. 1GB or 512MB")
    return f"{m.group(1)}{(m.group(2) or 'B').upper().replace('IB', 'iB')}"


def check_port_free(host: str, port: int) -> None:
    """Fail before any work when ``host:port`` cannot be bound (busy, or not an address here).

    The probe socket is closed at once; a race with another process remains possible, and then
    the server's own bind error is reported the same way.
    """
    import socket

    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port", "use 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host!r} cannot be resolved ({e.strerror})", "use an IP address such as 127.0.0.1") from e
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use", "pick another --port or stop what listens there") from e
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror})", "check --host and --port") from e
