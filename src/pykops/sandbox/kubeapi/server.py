"""The HTTP(S) side: a threading HTTP/1.1 server on a loopback address, TLS with client certificates.

The standard library's ``ThreadingHTTPServer`` is enough here (one thread per connection, chunked streaming
for watches) and keeps the emulator free of a web framework.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from pykops.sandbox.kubeapi.api import KubeApi, Request, Response
from pykops.sandbox.kubeapi.errors import status_object
from pykops.sandbox.kubeapi.store import EtcdStore, StoreError

log = logging.getLogger(__name__)
DEFAULT_VERSION = "v1.34.2"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    ssl_context: ssl.SSLContext | None = None
    api: KubeApi

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """End every open connection (keep-alive and watches): a stopped server answers nothing more."""
        with self.connections_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens in the connection's own thread, so a slow or failed handshake never blocks
        # the accept loop. TCP_NODELAY: headers and body are separate writes (Nagle + delayed ACK = 40 ms).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            try:
                request.settimeout(10)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        _Handler(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is not an error worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _identity(self) -> tuple[str, tuple[str, ...]] | None:
        """(user, groups) from the verified client certificate; None if it is required and absent."""
        srv = self.server
        if srv.ssl_context is None or srv.ssl_context.verify_mode == ssl.CERT_NONE:
            return "system:admin", ("system:masters", "system:authenticated")
        conn = cast(ssl.SSLSocket, self.connection)
        cert: Any = conn.getpeercert()
        if not cert:
            return None
        user = ""
        groups: list[str] = []
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    user = str(value)
                elif key == "organizationName":
                    groups.append(str(value))
        if not user:
            return None
        return user, (*groups, "system:authenticated")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        identity = self._identity()
        if identity is None:
            resp = Response(401, json.dumps(status_object(401, "Unauthorized", "Unauthorized")).encode())
        else:
            headers = {k: v for k, v in self.headers.items()}
            req = Request(self.command, url.path, query, body, headers, identity[0], identity[1])
            resp = self.server.api.handle(req)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.code)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Cache-Control", "no-cache, private")
        if resp.stream is None:
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in resp.stream:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            close = getattr(resp.stream, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class KubeApiServer:
    """A Kubernetes API server emulator backed by etcd (see the package docstring).

    ``etcd_endpoints`` is called per request (cached for a second): etcd client URLs; none → every request is
    answered 503. ``certfile``/``keyfile`` serve TLS; ``client_ca_file`` requires client certificates from
    that CA (CN = user, O = groups) and turns RBAC on. ``prefix`` is the etcd key prefix, ``version`` what
    ``/version`` reports, ``etcd_timeout`` the seconds an etcd request may take before the API answers 504.
    ``start(bootstrap_wait=...)`` waits that long for the default objects (they need an etcd quorum).
    """

    def __init__(
        self,
        etcd_endpoints: Callable[[], Sequence[str]],
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        client_ca_file: str | None = None,
        prefix: str = "/registry",
        host: str = "127.0.0.1",
        port: int = 0,
        service_cidr: str = "100.64.0.0/13",
        version: str | None = None,
        etcd_timeout: float = 3.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._certfile = certfile
        self._keyfile = keyfile
        self._client_ca_file = client_ca_file
        self.store = EtcdStore(etcd_endpoints, timeout=etcd_timeout)
        self.api = KubeApi(
            self.store,
            prefix=prefix,
            version=version or DEFAULT_VERSION,
            service_cidr=service_cidr,
            server_address=lambda: f"{self.host}:{self.port}",
            authorize=client_ca_file is not None,
            root_ca_pem=Path(client_ca_file).read_text() if client_ca_file else "",
        )
        self._httpd: _HTTPServer | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None
        self._bootstrapper: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._bound_port or self._requested_port

    @property
    def url(self) -> str:
        scheme = "https" if self._certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self._certfile:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._certfile, self._keyfile)
        if self._client_ca_file:
            ctx.load_verify_locations(self._client_ca_file)
            # optional: no certificate → 401 (a bad certificate fails the handshake)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def start(self, *, bootstrap_wait: float = 10.0) -> KubeApiServer:
        httpd = _HTTPServer((self.host, self._requested_port), _Handler)
        httpd.ssl_context = self._ssl_context()
        httpd.api = self.api
        self._httpd = httpd
        self._bound_port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="kubeapi-http", daemon=True
        )
        self._thread.start()
        self._bootstrapper = threading.Thread(
            target=self._bootstrap_loop, name="kubeapi-bootstrap", daemon=True
        )
        self._bootstrapper.start()
        self.api.bootstrapped.wait(bootstrap_wait if self.store.endpoints() else 0)
        return self

    def _bootstrap_loop(self) -> None:
        """Create the cluster's default objects as soon as etcd answers (retried while it does not)."""
        while not self.api.stopping.is_set():
            try:
                self.api.ensure_defaults()
                return
            except StoreError:
                self.api.stopping.wait(1.0)  # no etcd quorum yet: the members are still coming up
            except Exception:
                log.exception("kubeapi: creating the cluster's default objects failed; retrying")
                self.api.stopping.wait(1.0)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Whether the defaults were created within ``timeout`` seconds."""
        return self.api.bootstrapped.wait(timeout)

    def stop(self) -> None:
        self.api.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_connections()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._bootstrapper is not None:
            self._bootstrapper.join(timeout=5)
            self._bootstrapper = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
