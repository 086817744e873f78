"""A local AWS emulator: moto's server in a child process, with pykops' fidelity fixes.

Run it directly::

    python -m pykops.sandbox.aws_emulator --host 127.0.0.1 --port 4566

or from Python (tests, the demo)::

    with AwsEmulator() as aws:          # picks a free port
        os.environ.update(aws.env())    # AWS_ENDPOINT_URL, region, fake credentials
        ...

The server always binds a loopback address. moto is imported only in the child, so importing this module
is cheap and does not need the ``test`` extra.

Fidelity fixes
--------------
moto is good but not AWS. Where pykops depends on an AWS behaviour that moto 5.2.5 gets wrong, the child
patches moto before serving; each fix in :data:`FIDELITY_FIXES` names the AWS behaviour it restores and has a
test in ``tests/test_aws_emulator.py`` that shows that behaviour over HTTP. A fix can be switched off
(``--without-fix NAME``, ``AwsEmulator(fixes=...)``) to show what plain moto does.

The child also serves ``GET /_pykops/health`` (``{"status": "ok", "fixes": [...]}``), which is how
:meth:`AwsEmulator.start` knows the server is up.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from pykops.errors import PykopsError

DEFAULT_REGION = "eu-west-1"
DEFAULT_HOST = "127.0.0.1"
HEALTH_PATH = "/_pykops/health"
_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_LOG_TAIL_BYTES = 4000

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AwsEmulatorError(PykopsError):
    """The AWS emulator could not be started or reached."""


# ---------------------------------------------------------------------------------------------------------
# Fidelity fixes. They run in the child process only (they import moto).
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FidelityFix:
    """A patch to moto that restores one documented AWS behaviour."""

    name: str
    aws_behaviour: str
    apply: Callable[[], None]


def _fix_s3_atomic_requests() -> None:
    """Serialise the handling of S3 requests (after the request body has been received).

    moto's PutObject evaluates ``If-None-Match``/``If-Match`` with ``backend.get_object`` and only then
    stores the new object with ``backend.put_object``; nothing makes the pair atomic, and the threaded
    server runs requests concurrently. Two racing conditional writes can both pass the check and both
    succeed (``test_racing_conditional_writes_without_fix_can_both_succeed`` shows it by widening the
    window). Holding one lock around S3 request handling restores S3's guarantees: conditional writes are
    atomic and every read sees the latest completed write. The request body is read before the lock is
    taken, so slow uploads do not hold it.
    """
    from moto.s3 import responses

    s3_response: Any = responses.S3Response  # Any: we patch its methods
    lock = threading.RLock()
    key_response = s3_response._key_response
    bucket_response = s3_response._bucket_response

    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        with lock:
            return key_response(self, request, full_url)

    def _bucket_response(self: Any, request: Any, full_url: str) -> Any:
        with lock:
            return bucket_response(self, request, full_url)

    s3_response._key_response = _key_response
    s3_response._bucket_response = _bucket_response


def _fix_s3_delete_if_match_star() -> None:
    """Make ``DeleteObject`` with ``If-Match: *`` delete an existing object.

    moto compares ``*`` with the object's ETag, so the request always fails with 412. On AWS ``If-Match: *``
    means "only if the object exists": it deletes a live object (204) and answers 404 NoSuchKey if there is
    none.
    """
    from moto.s3 import responses
    from moto.s3.exceptions import MissingKey
    from werkzeug.datastructures import Headers

    s3_response: Any = responses.S3Response
    delete_object = s3_response.delete_object

    def _delete_object(self: Any) -> Any:
        if str(self.headers.get("If-Match", "")).strip() != "*":
            return delete_object(self)
        key_name = self.parse_key_name()
        if self.backend.get_object(self.bucket_name, key_name) is None:
            raise MissingKey(key=key_name)
        original = self.headers
        unconditional = Headers(list(original.items()))
        unconditional.remove("If-Match")
        self.headers = unconditional
        try:
            return delete_object(self)
        finally:
            self.headers = original

    s3_response.delete_object = _delete_object


_ACCESS_DENIED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    "<RequestId>0000000000000000</RequestId><HostId>pykops-aws-emulator</HostId></Error>"
)


def _fix_s3_access_denied_error() -> None:
    """Answer object requests denied by a bucket policy with an ``AccessDenied`` error document.

    moto answers them with a bare ``403`` and an empty body, which SDKs report as error code ``"403"``.
    AWS sends ``403`` with ``<Error><Code>AccessDenied</Code>...``, and SDKs (and pykops' messages) key on
    the ``AccessDenied`` code.
    """
    from moto.s3 import responses

    s3_response: Any = responses.S3Response
    key_response = s3_response._key_response

    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        response = key_response(self, request, full_url)
        if isinstance(response, tuple) and len(response) == 3:
            status, headers, body = response
            if status == 403 and not body:
                return 403, {**headers, "content-type": "application/xml"}, _ACCESS_DENIED_XML
        return response

    s3_response._key_response = _key_response


FIDELITY_FIXES: tuple[FidelityFix, ...] = (
    FidelityFix(
        "s3-atomic-requests",
        "S3 conditional writes (If-None-Match: *, If-Match: <etag>) are atomic: of two racing writers "
        "exactly one succeeds and the other gets 412 PreconditionFailed (or 409 ConditionalRequestConflict)",
        _fix_s3_atomic_requests,
    ),
    FidelityFix(
        "s3-delete-if-match-star",
        "DeleteObject with If-Match: * deletes the object if it exists (204) "
        "and answers 404 NoSuchKey if not",
        _fix_s3_delete_if_match_star,
    ),
    FidelityFix(
        "s3-access-denied-error",
        "a request denied by a bucket policy gets 403 with error code AccessDenied",
        _fix_s3_access_denied_error,
    ),
)
FIX_NAMES: tuple[str, ...] = tuple(fix.name for fix in FIDELITY_FIXES)


def apply_fidelity_fixes(names: Iterable[str] = FIX_NAMES) -> list[str]:
    """Patch moto with the named fixes (in :data:`FIDELITY_FIXES` order); return the names applied."""
    wanted = set(names)
    unknown = wanted.difference(FIX_NAMES)
    if unknown:
        raise AwsEmulatorError(f"unknown fidelity fix {sorted(unknown)[0]!r}; known: {', '.join(FIX_NAMES)}")
    applied = []
    for fix in FIDELITY_FIXES:
        if fix.name in wanted:
            fix.apply()
            applied.append(fix.name)
    return applied


def _inject_s3_write_delay(seconds: float) -> None:
    """Fault injection for tests, not a fidelity fix: sleep in moto's S3 backend before an object is stored.

    This widens the window between PutObject's precondition check and its write, so that tests can show the
    race that ``s3-atomic-requests`` closes.
    """
    from moto.s3 import models

    s3_backend: Any = models.S3Backend
    put_object = s3_backend.put_object

    def _put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return put_object(self, *args, **kwargs)

    s3_backend.put_object = _put_object


# ---------------------------------------------------------------------------------------------------------
# The server (child process).
# ---------------------------------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise AwsEmulatorError(
            f"the AWS emulator only binds a loopback address (e.g. 127.0.0.1), not {host!r}"
        )


def _with_health(app: WsgiApp, fixes: Sequence[str]) -> WsgiApp:
    health = json.dumps({"status": "ok", "fixes": list(fixes)}).encode()

    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(health)))]
            )
            return [health]
        return app(environ, start_response)

    return wrapper


def _write_ready_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    os.replace(tmp, path)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _exit_on_stdin_eof() -> None:
    """Stop the server when our parent goes away (it holds the write end of our stdin)."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader would make interpreter
        # shutdown abort ("could not acquire lock for <stdin>") when we are stopped by a signal instead.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def serve(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    fixes: Iterable[str] = FIX_NAMES,
    s3_write_delay: float = 0.0,
    ready_file: Path | None = None,
    exit_on_stdin_eof: bool = False,
    verbose: bool = False,
) -> None:
    """Apply the fidelity fixes and serve moto on ``host:port`` until SIGTERM/SIGINT (blocks)."""
    import logging

    _check_loopback(host)
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    applied = apply_fidelity_fixes(fixes)
    if s3_write_delay > 0:
        _inject_s3_write_delay(s3_write_delay)
    if not verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    app = _with_health(DomainDispatcherApplication(create_backend_app), applied)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    bound_port = int(server.socket.getsockname()[1])
    signal.signal(signal.SIGTERM, _interrupt)
    if exit_on_stdin_eof:
        _exit_on_stdin_eof()
    if ready_file is not None:
        _write_ready_file(ready_file, bound_port)
    fix_list = ", ".join(applied) or "none"
    print(f"pykops AWS emulator listening on http://{host}:{bound_port} (fixes: {fix_list})", flush=True)
    server.serve_forever()  # returns (and closes the socket) on KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pykops.sandbox.aws_emulator",
        description="Serve moto (with pykops' fidelity fixes) on a loopback address.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="loopback address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument(
        "--without-fix",
        action="append",
        default=[],
        choices=FIX_NAMES,
        metavar="NAME",
        help=f"leave out a fidelity fix (repeatable; one of: {', '.join(FIX_NAMES)})",
    )
    parser.add_argument("--no-fixes", action="store_true", help="serve plain moto")
    parser.add_argument("--s3-write-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", type=Path, help="write {port, pid} as JSON here once listening")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    fixes = [] if args.no_fixes else [n for n in FIX_NAMES if n not in args.without_fix]
    try:
        serve(
            args.host,
            args.port,
            fixes=fixes,
            s3_write_delay=args.s3_write_delay,
            ready_file=args.ready_file,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
            verbose=args.verbose,
        )
    except AwsEmulatorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------------------------------------
# The Python API (parent process).
# ---------------------------------------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AwsEmulator:
    """The AWS emulator as a child process of ours; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        region: str = DEFAULT_REGION,
        fixes: Iterable[str] = FIX_NAMES,
        s3_write_delay: float = 0.0,
        startup_timeout: float = _STARTUP_TIMEOUT,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self.region = region
        self.fixes = tuple(fixes)
        unknown = set(self.fixes).difference(FIX_NAMES)
        if unknown:
            raise AwsEmulatorError(
                f"unknown fidelity fix {sorted(unknown)[0]!r}; known: {', '.join(FIX_NAMES)}"
            )
        self.s3_write_delay = s3_write_delay
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> AwsEmulator:
        """Start the child on ``port`` (0: a free port chosen by the child) and wait until it answers."""
        if self._proc is not None:
            raise AwsEmulatorError("the AWS emulator is already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="pykops-aws-emulator-"))
        ready_file = self._workdir / "ready.json"
        self._log = open(self._workdir / "emulator.log", "w+b")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable,
            "-m",
            "pykops.sandbox.aws_emulator",
            "--host",
            self.host,
            "--port",
            str(port),
            "--ready-file",
            str(ready_file),
            "--exit-on-stdin-eof",
        ]
        cmd += ["--no-fixes"] if not self.fixes else []
        cmd += [arg for name in FIX_NAMES if name not in self.fixes for arg in ("--without-fix", name)]
        if self.s3_write_delay > 0:
            cmd += ["--s3-write-delay", str(self.s3_write_delay)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        try:
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the child (close its stdin; SIGTERM, SIGKILL if it lingers) and remove its work directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the child's stdin watcher stops the server cleanly
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.port = None

    def __enter__(self) -> AwsEmulator:
        return self if self._proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- use -----------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise AwsEmulatorError("the AWS emulator is not started")
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and pykops) at the emulator with fake credentials.

        ``NO_PROXY``/``no_proxy`` gain the emulator's host so that a configured HTTP proxy is bypassed.
        """
        no_proxy = ",".join(
            part for part in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), self.host) if part
        )
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def health(self) -> dict[str, Any]:
        """The child's health document: ``{"status": "ok", "fixes": [...]}``."""
        with _NO_PROXY.open(self.endpoint_url + HEALTH_PATH, timeout=2) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc

    def reset(self) -> None:
        """Forget every resource in the emulator (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST", data=b"")
        with _NO_PROXY.open(request, timeout=10):
            pass

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote to stdout/stderr."""
        if self._workdir is None:
            return ""
        path = self._workdir / "emulator.log"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- helpers -------------------------------------------------------------------------------------------

    def _wait_ready(self, ready_file: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while self.port is None:
            self._check_alive()
            if ready_file.exists():
                self.port = int(json.loads(ready_file.read_text())["port"])
                break
            self._check_deadline(deadline)
            time.sleep(0.05)
        while True:
            self._check_alive()
            try:
                if self.health().get("status") == "ok":
                    return
            except (OSError, ValueError):
                pass
            self._check_deadline(deadline)
            time.sleep(0.05)

    def _check_alive(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise AwsEmulatorError(
                f"the AWS emulator exited with code {code} before it was ready; "
                f"its last output:\n{self.log_tail()}"
            )

    def _check_deadline(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise AwsEmulatorError(
                f"the AWS emulator did not answer within {self.startup_timeout:.0f}s; "
                f"its last output:\n{self.log_tail()}"
            )


if __name__ == "__main__":
    sys.exit(main())
