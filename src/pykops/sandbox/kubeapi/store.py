"""Objects in etcd v3 through etcd3gw (the grpc-gateway JSON API).

Keys are ``<prefix>/<resource>/<namespace>/<name>`` (cluster-scoped: ``<prefix>/<resource>/<name>``), values
the object's JSON without ``metadata.resourceVersion``: the resourceVersion is etcd's ``mod_revision`` of the
key (a list's is the header revision). Writes are etcd transactions: create-if-absent, update-if-revision.

We use etcd3gw's client for the endpoint, session and error mapping, but make the range/txn/watch requests
with its ``post``/``session`` ourselves: its ``get`` drops the response header (we need the revision) and its
watcher parses chunks, not lines, and cannot report a cancelled (compacted) watch.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw import exceptions as etcd_exc
from requests.adapters import HTTPAdapter

NO_CONTROL_PLANE = "no control-plane machine is serving the Kubernetes API (the sandbox has no etcd endpoint)"


class StoreError(Exception):
    """etcd could not do it: ``code`` is the HTTP status the API answers with."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


class Conflict(Exception):
    """A transaction's compare failed: the key changed (or exists, or is gone)."""

    def __init__(self, current_rev: int) -> None:
        super().__init__(current_rev)
        self.current_rev = current_rev  # 0: the key does not exist


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _range_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


@dataclass
class KV:
    key: str
    obj: dict[str, Any]
    mod_revision: int
    create_revision: int


@dataclass
class WatchEvent:
    type: str  # "PUT" | "DELETE" | "CANCELED"
    kv: KV | None
    prev: KV | None
    revision: int


def _kv(raw: dict[str, Any]) -> KV:
    value = _unb64(raw.get("value", ""))
    return KV(
        key=_unb64(raw["key"]).decode(),
        obj=json.loads(value) if value else {},
        mod_revision=int(raw.get("mod_revision", 0)),
        create_revision=int(raw.get("create_revision", 0)),
    )


class EtcdStore:
    def __init__(
        self, endpoints: Callable[[], Sequence[str]], *, timeout: float = 3.0, cache_seconds: float = 1.0
    ) -> None:
        self._endpoints = endpoints
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, list[str]] = (0.0, [])
        self._clients: dict[str, etcd3gw.Etcd3Client] = {}
        self._lock = threading.Lock()
        self._watch_sockets: set[Any] = set()

    # --- endpoints and requests ---------------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        with self._lock:
            at, urls = self._cached
            now = time.monotonic()
            if now - at > self._cache_seconds:
                urls = [str(u) for u in self._endpoints()]
                self._cached = (now, urls)
            return urls

    def _client(self, url: str) -> etcd3gw.Etcd3Client:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                parts = urlsplit(url)
                session = requests.Session()
                session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=64))
                session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=64))
                client = etcd3gw.Etcd3Client(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or 2379,
                    protocol=parts.scheme or "http",
                    timeout=self._timeout,
                    api_path="/v3/",  # etcd >= 3.4; skips a /version round trip per client
                    session=session,
                )
                self._clients[url] = client
            return client

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        urls = self.endpoints()
        if not urls:
            raise StoreError(503, "ServiceUnavailable", NO_CONTROL_PLANE)
        last: Exception | None = None
        for url in urls:
            client = self._client(url)
            try:
                result: dict[str, Any] = client.post(client.get_url(path), json=payload)
                return result
            except etcd_exc.ConnectionFailedError as exc:
                last = exc  # this member is down: try the next one
            except etcd_exc.ConnectionTimeoutError as exc:
                raise StoreError(504, "Timeout", f"etcd request timed out: {_etcd_message(exc)}") from None
            except etcd_exc.Etcd3Exception as exc:
                raise StoreError(500, "InternalError", f"etcd error: {_etcd_message(exc)}") from None
            except requests.RequestException as exc:
                last = exc
        raise StoreError(503, "ServiceUnavailable", f"no etcd member reachable: {_etcd_message(last)}")

    # --- reads -------------------------------------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        result = self._post("/kv/range", {"key": _b64(key)})
        kvs = result.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def scan(self, prefix: str, revision: int | None = None) -> tuple[list[KV], int]:
        payload: dict[str, Any] = {"key": _b64(prefix), "range_end": _b64(_range_end(prefix))}
        if revision:
            payload["revision"] = revision
        result = self._post("/kv/range", payload)
        rev = int((result.get("header") or {}).get("revision", 0))
        return [_kv(raw) for raw in result.get("kvs") or []], rev

    def revision(self) -> int:
        result = self._post("/kv/range", {"key": _b64("\0"), "count_only": True, "limit": 1})
        return int((result.get("header") or {}).get("revision", 0))

    # --- writes ------------------------------------------------------------------------------------------

    def _txn(self, key: str, compare: dict[str, Any], success: list[dict[str, Any]]) -> tuple[bool, int, Any]:
        txn = {
            "compare": [{"key": _b64(key), **compare}],
            "success": success,
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        result = self._post("/kv/txn", txn)
        rev = int((result.get("header") or {}).get("revision", 0))
        if result.get("succeeded"):
            return True, rev, result.get("responses") or []
        responses = result.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or []
        current = int(kvs[0].get("mod_revision", 0)) if kvs else 0
        return False, current, None

    def create(self, key: str, obj: dict[str, Any]) -> int:
        """Put if absent; the new revision. Raises Conflict(current revision) if the key exists."""
        ok, rev, _ = self._txn(
            key,
            {"result": "EQUAL", "target": "CREATE", "create_revision": 0},
            [{"request_put": {"key": _b64(key), "value": _b64(json.dumps(obj))}}],
        )
        if not ok:
            raise Conflict(rev)
        return rev

    def update(self, key: str, obj: dict[str, Any], expected_rev: int) -> int:
        """Put if the key's mod_revision is ``expected_rev``; the new revision, else Conflict."""
        ok, rev, _ = self._txn(
            key,
            {"result": "EQUAL", "target": "MOD", "mod_revision": expected_rev},
            [{"request_put": {"key": _b64(key), "value": _b64(json.dumps(obj))}}],
        )
        if not ok:
            raise Conflict(rev)
        return rev

    def delete(self, key: str, expected_rev: int) -> int:
        """Delete if the key's mod_revision is ``expected_rev``; the deletion's revision, else Conflict."""
        ok, rev, _ = self._txn(
            key,
            {"result": "EQUAL", "target": "MOD", "mod_revision": expected_rev},
            [{"request_delete_range": {"key": _b64(key)}}],
        )
        if not ok:
            raise Conflict(rev)
        return rev

    # --- watch -------------------------------------------------------------------------------------------

    def watch(
        self, prefix: str, start_revision: int
    ) -> tuple[queue.Queue[WatchEvent | None], Callable[[], None]]:
        """Events for keys under ``prefix`` from ``start_revision`` on, in a queue (None: the stream ended).

        Returns the queue and a cancel function."""
        urls = self.endpoints()
        if not urls:
            raise StoreError(503, "ServiceUnavailable", NO_CONTROL_PLANE)
        create: dict[str, Any] = {
            "key": _b64(prefix),
            "range_end": _b64(_range_end(prefix)),
            "start_revision": start_revision,
            "prev_kv": True,
        }
        resp: requests.Response | None = None
        failure = "no etcd member reachable"
        for url in urls:
            client = self._client(url)
            try:
                resp = client.session.post(
                    client.get_url("/watch"),
                    json={"create_request": create},
                    stream=True,
                    timeout=(self._timeout, None),
                )
            except requests.RequestException as exc:
                failure = f"etcd watch failed: {exc}"
                continue  # this member is down: try the next one
            if resp.status_code != 200:
                raise StoreError(500, "InternalError", f"etcd watch failed: {resp.text}")
            break
        if resp is None:
            raise StoreError(503, "ServiceUnavailable", failure)
        events: queue.Queue[WatchEvent | None] = queue.Queue()
        stopped = threading.Event()

        def pump() -> None:
            try:
                for line in resp.iter_lines():
                    if stopped.is_set():
                        break
                    if not line.strip():
                        continue
                    chunk = json.loads(line)
                    result = chunk.get("result") or {}
                    if "error" in chunk:
                        break
                    rev = int((result.get("header") or {}).get("revision", 0))
                    if result.get("canceled"):
                        events.put(WatchEvent("CANCELED", None, None, int(result.get("compact_revision", 0))))
                        break
                    for ev in result.get("events") or []:
                        kind = ev.get("type", "PUT")
                        kv = _kv(ev["kv"]) if kind == "PUT" else None
                        prev = _kv(ev["prev_kv"]) if ev.get("prev_kv") else None
                        mod = int(ev["kv"].get("mod_revision", rev))
                        events.put(WatchEvent(kind, kv, prev, mod))
            except Exception:
                pass
            finally:
                events.put(None)

        thread = threading.Thread(target=pump, name="kubeapi-etcd-watch", daemon=True)
        thread.start()

        def cancel() -> None:
            stopped.set()
            _shutdown_response(resp)

        return events, cancel


def _shutdown_response(resp: requests.Response) -> None:
    """Unblock a thread reading a streaming response (closing alone does not interrupt a blocking read)."""
    try:
        sock = socket.fromfd(resp.raw._fp.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    except Exception:
        pass
    with contextlib.suppress(Exception):
        resp.close()


def _etcd_message(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = " ".join(str(a) for a in exc.args if a) or type(exc).__name__
    try:
        data = json.loads(exc.args[0]) if exc.args else None
        if isinstance(data, dict) and (data.get("error") or data.get("message")):
            return str(data.get("message") or data.get("error"))
    except (ValueError, TypeError):
        pass
    return text[:500]
