"""Request handling: routing, discovery, CRUD, list/watch, patches, subresources (no HTTP here)."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import logging
import queue
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from pykops.sandbox.kubeapi import bootstrap, patch, tables
from pykops.sandbox.kubeapi import registry as reg
from pykops.sandbox.kubeapi.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
    status_object,
)
from pykops.sandbox.kubeapi.rbac import Attributes, Authorizer
from pykops.sandbox.kubeapi.registry import Resource
from pykops.sandbox.kubeapi.selectors import SelectorError, matcher, selector_from_label_selector
from pykops.sandbox.kubeapi.store import KV, NO_CONTROL_PLANE, Conflict, EtcdStore, StoreError

log = logging.getLogger(__name__)
JSON = "application/json"
MAX_WATCH_SECONDS = 1800
WATCH_QUORUM_CHECK_SECONDS = 10.0
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet
_NAMESPACE = reg.must("", "namespaces")
_PODS = reg.must("", "pods")
_SERVICES = reg.must("", "services")
_PRIORITY_CLASSES = reg.must("scheduling.k8s.io", "priorityclasses")
_PDBS = reg.must("policy", "poddisruptionbudgets")
_SERVICE_ACCOUNTS = reg.must("", "serviceaccounts")
_ROOT_CA_NOTE = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such "
    "as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions "
    "of Kubernetes clusters."
)
_CONFIG_MAPS = reg.must("", "configmaps")
_CRDS = reg.must("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    user: str = "system:anonymous"
    groups: tuple[str, ...] = ()


@dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = JSON
    stream: Iterator[bytes] | None = None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_response(code: int, obj: Any) -> Response:
    return Response(code, json.dumps(obj, separators=(",", ":")).encode())


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


class KubeApi:
    def __init__(
        self,
        store: EtcdStore,
        *,
        prefix: str,
        version: str,
        service_cidr: str,
        server_address: Callable[[], str],
        authorize: bool,
        root_ca_pem: str = "",
    ) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.version = version
        self.service_net = ipaddress.ip_network(service_cidr, strict=False)
        self.server_address = server_address
        self.stopping = threading.Event()
        self.authorizer = Authorizer(self) if authorize else None
        self.root_ca_pem = root_ca_pem
        self._crd_cache: tuple[float, list[Resource]] = (0.0, [])
        self.bootstrapped = threading.Event()

    # --- keys --------------------------------------------------------------------------------------------

    def key(self, res: Resource, namespace: str | None, name: str) -> str:
        if res.namespaced:
            return f"{self.prefix}/{res.storage_name}/{namespace}/{name}"
        return f"{self.prefix}/{res.storage_name}/{name}"

    def list_prefix(self, res: Resource, namespace: str | None) -> str:
        if res.namespaced and namespace:
            return f"{self.prefix}/{res.storage_name}/{namespace}/"
        return f"{self.prefix}/{res.storage_name}/"

    def out(self, res: Resource, kv: KV, rev: int | None = None) -> dict[str, Any]:
        """The object as served (``kv.obj`` itself, completed: each KV is freshly decoded, never shared)."""
        obj = kv.obj
        obj["apiVersion"] = res.group_version
        obj["kind"] = res.kind
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev or kv.mod_revision)
        _zero_values(res, obj)
        return obj

    # --- custom resources --------------------------------------------------------------------------------

    def custom_resources(self) -> list[Resource]:
        """The resources the stored CustomResourceDefinitions serve (cached for a second)."""
        at, cached = self._crd_cache
        if time.monotonic() - at < 1.0:
            return cached
        kvs, _ = self.store.scan(self.list_prefix(_CRDS, None))
        found = [
            res for kv in kvs if not _meta(kv.obj).get("deletionTimestamp") for res in reg.from_crd(kv.obj)
        ]
        builtin = {(r.group, r.plural) for r in reg.RESOURCES}
        found = [r for r in found if (r.group, r.plural) not in builtin]
        self._crd_cache = (time.monotonic(), found)
        return found

    def all_resources(self) -> list[Resource]:
        """The built-in table and the custom resources; discovery without etcd shows the built-in ones."""
        try:
            return [*reg.RESOURCES, *self.custom_resources()]
        except StoreError:
            return list(reg.RESOURCES)

    def resolve(self, group: str, version: str, plural: str) -> Resource | None:
        res = reg.lookup(group, version, plural)
        if res is not None or group in ("", *reg.group_versions()):
            return res
        return next(
            (
                r
                for r in self.custom_resources()
                if (r.group, r.version, r.plural) == (group, version, plural)
            ),
            None,
        )

    def invalidate_crds(self) -> None:
        self._crd_cache = (0.0, [])

    # --- entry point -------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            if not self.store.endpoints():
                # no control-plane machine runs: nothing answers, not even discovery or /version
                return _json_response(503, status_object(503, "ServiceUnavailable", NO_CONTROL_PLANE))
            return self._route(req)
        except ApiError as err:
            return _json_response(err.code, err.status())
        except StoreError as err:
            return _json_response(err.code, status_object(err.code, err.reason, err.message))
        except SelectorError as err:
            return _json_response(400, status_object(400, "BadRequest", str(err)))
        except patch.PatchError as err:
            return _json_response(422, status_object(422, "Invalid", str(err)))
        except Exception as err:  # a bug of ours, or a body shaped unlike any object: answer, never hang up
            log.exception("kubeapi: %s %s failed", req.method, req.path)
            message = f"the Kubernetes API emulator failed: {type(err).__name__}: {err}"
            return _json_response(500, status_object(500, "InternalError", message))

    def _route(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in ("healthz", "livez", "readyz"):
            self._authorize_nonresource(req, path)
            return self._health(parts[0], parts[1:])
        if path == "/version":
            self._authorize_nonresource(req, path)
            return _json_response(200, self._version())
        if path == "/":
            self._authorize_nonresource(req, path)
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
            gvs = reg.group_versions(self.all_resources())
            paths += [f"/apis/{g}" for g in gvs if g]
            paths += [f"/apis/{g}/{v}" for g, vs in gvs.items() if g for v in vs]
            return _json_response(200, {"paths": sorted(paths)})
        if parts and parts[0] == "openapi" and len(parts) >= 2 and parts[1] == "v3":
            self._authorize_nonresource(req, path)
            return _json_response(200, self._openapi_v3("/".join(parts[2:])))
        if not parts or parts[0] not in ("api", "apis"):
            self._authorize_nonresource(req, path)
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts[0] == "api":
            if len(parts) == 1:
                self._authorize_nonresource(req, path)
                return _json_response(200, self._api_versions())
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) == 1:
                self._authorize_nonresource(req, path)
                return _json_response(200, self._api_group_list())
            if len(parts) == 2:
                self._authorize_nonresource(req, path)
                return _json_response(200, self._api_group(parts[1]))
            group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            self._authorize_nonresource(req, path)
            return _json_response(200, self._resource_list(group, version))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.resolve(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        res = self.resolve(group, version, rest[0])
        if res is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "log" and req.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on pods/log")
        if res.namespaced and name is not None and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return self._resource(req, res, namespace, name, sub)

    # --- authorization -----------------------------------------------------------------------------------

    def _authorize_nonresource(self, req: Request, path: str) -> None:
        if self.authorizer is None:
            return
        verb = {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "DELETE": "delete"}.get(
            req.method, req.method.lower()
        )
        attrs = Attributes(req.user, req.groups, verb, path=path)
        self.authorizer.check(attrs)

    def _authorize(
        self, req: Request, verb: str, res: Resource, namespace: str | None, name: str | None, sub: str | None
    ) -> None:
        if self.authorizer is None:
            return
        attrs = Attributes(
            req.user,
            req.groups,
            verb,
            group=res.group,
            resource=res.plural,
            subresource=sub or "",
            namespace=namespace or "",
            name=name or "",
        )
        self.authorizer.check(attrs)

    # --- discovery ---------------------------------------------------------------------------------------

    def _version(self) -> dict[str, Any]:
        digits = self.version.lstrip("v").split(".")
        return {
            "major": digits[0],
            "minor": digits[1] if len(digits) > 1 else "0",
            "gitVersion": self.version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-11-11T00:00:00Z",
            "goVersion": "go1.24.9",
            "compiler": "gc",
            "platform": "linux/amd64",
            "emulator": "pykops sandbox (a simulation)",
        }

    def _openapi_v3(self, gv_path: str) -> dict[str, Any]:
        """Just enough OpenAPI v3 for kubectl: every PATCH takes ``fieldValidation``, so kubectl validates on
        the server (which accepts everything) instead of downloading schemas; there are no component schemas,
        so ``kubectl apply`` computes its patches from its built-in types."""
        gvs = {
            ("api/" if not g else f"apis/{g}/") + v: (g, v)
            for g, vs in reg.group_versions(self.all_resources()).items()
            for v in vs
        }
        if not gv_path:
            return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}"} for p in gvs}}
        if gv_path not in gvs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group, version = gvs[gv_path]
        paths: dict[str, Any] = {}
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for res in reg.resources_of(group, version, self.all_resources()):
            base = (
                f"/{gv_path}/namespaces/{{namespace}}/{res.plural}"
                if res.namespaced
                else f"/{gv_path}/{res.plural}"
            )
            gvk = {"group": group, "version": version, "kind": res.kind}
            op = {
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param],
            }
            paths[base + "/{name}"] = {"patch": op, "put": {**op, "x-kubernetes-action": "put"}}
            paths[base] = {"post": {**op, "x-kubernetes-action": "post"}}
        info = {"title": "Kubernetes (pykops sandbox emulator)", "version": self.version}
        return {"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": {}}}

    def _address(self) -> list[dict[str, str]]:
        return [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address()}]

    def _api_versions(self) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": self._address()}

    def _api_group(self, group: str) -> dict[str, Any]:
        versions = reg.group_versions(self.all_resources()).get(group)
        if not group or not versions:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def _api_group_list(self) -> dict[str, Any]:
        groups = []
        for group in reg.group_versions(self.all_resources()):
            if group:
                g = self._api_group(group)
                g.pop("kind")
                g.pop("apiVersion")
                groups.append(g)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = reg.resources_of(group, version, self.all_resources())
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        out: list[dict[str, Any]] = []
        for res in resources:
            entry: dict[str, Any] = {
                "name": res.plural,
                "singularName": res.singular_name,
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": reg.VERBS,
            }
            if res.short_names:
                entry["shortNames"] = list(res.short_names)
            if res.categories:
                entry["categories"] = list(res.categories)
            out.append(entry)
            for sub in res.subresources:
                subentry: dict[str, Any] = {
                    "name": f"{res.plural}/{sub}",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    subentry.update(group="autoscaling", version="v1", kind="Scale")
                elif sub == "binding":
                    subentry.update(kind="Binding", verbs=["create"])
                elif sub == "eviction":
                    subentry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
                elif sub == "finalize":
                    subentry["verbs"] = ["update"]
                elif sub == "log":
                    subentry["verbs"] = ["get"]
                out.append(subentry)
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}

    def _health(self, which: str, rest: list[str]) -> Response:
        if which == "livez":
            return Response(200, b"ok", "text/plain; charset=utf-8")
        try:
            self.store.revision()
        except StoreError as err:
            return Response(
                500, f"[-]etcd failed: {err.message}\n{which} check failed".encode(), "text/plain"
            )
        return Response(200, b"ok", "text/plain; charset=utf-8")

    # --- resources ---------------------------------------------------------------------------------------

    def _resource(
        self, req: Request, res: Resource, namespace: str | None, name: str | None, sub: str | None
    ) -> Response:
        q = req.query
        watching = q.get("watch", "") in ("1", "true", "True")
        method = req.method
        if method in ("GET", "HEAD"):
            if watching:
                self._authorize(req, "watch", res, namespace, name, sub)
                return self._watch(req, res, namespace, name)
            if name is None:
                self._authorize(req, "list", res, namespace, None, None)
                return self._list(req, res, namespace)
            self._authorize(req, "get", res, namespace, name, sub)
            return self._get(req, res, namespace, name, sub)
        if method == "POST":
            if name is None:
                self._authorize(req, "create", res, namespace, None, None)
                return self._create(req, res, namespace)
            if sub in ("binding", "eviction"):
                self._authorize(req, "create", res, namespace, name, sub)
                if sub == "binding":
                    return self._bind(req, res, namespace, name)
                return self._evict(req, res, namespace, name)
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if name is None:
            if method == "DELETE":
                self._authorize(req, "deletecollection", res, namespace, None, None)
                return self._delete_collection(req, res, namespace)
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if method == "PUT":
            self._authorize(req, "update", res, namespace, name, sub)
            return self._update(req, res, namespace, name, sub)
        if method == "PATCH":
            self._authorize(req, "patch", res, namespace, name, sub)
            return self._patch(req, res, namespace, name, sub)
        if method == "DELETE":
            self._authorize(req, "delete", res, namespace, name, sub)
            return self._delete(req, res, namespace, name)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _read_body(self, req: Request) -> Any:
        if not req.body:
            raise bad_request("the request has no body")
        if "protobuf" in req.headers.get("Content-Type", ""):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the sandbox's Kubernetes API emulator (a simulation) does not decode protobuf; send JSON "
                "(kubectl create <kind> sends protobuf: use kubectl apply -f, e.g. "
                "kubectl create ... --dry-run=client -o yaml | kubectl apply -f -)",
            )
        text = req.body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            pass
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise bad_request(f"the request body is neither JSON nor YAML: {exc}") from None

    def _wants_table(self, req: Request) -> bool:
        return "as=Table" in req.headers.get("Accept", "")

    def _render(self, req: Request, res: Resource, obj: dict[str, Any], code: int = 200) -> Response:
        if self._wants_table(req):
            include = req.query.get("includeObject", "Metadata")
            return _json_response(code, tables.table(res, [obj], include, obj["metadata"]["resourceVersion"]))
        return _json_response(code, obj)

    def _get_kv(self, res: Resource, namespace: str | None, name: str) -> KV:
        kv = self.store.get(self.key(res, namespace, name))
        if kv is None:
            raise not_found(res, name)
        return kv

    def _get(
        self, req: Request, res: Resource, namespace: str | None, name: str, sub: str | None
    ) -> Response:
        kv = self._get_kv(res, namespace, name)
        obj = self.out(res, kv)
        if sub == "scale":
            return _json_response(200, _scale_of(res, obj))
        if sub == "log":
            containers = [c.get("name") for c in (obj.get("spec") or {}).get("containers") or []]
            container = req.query.get("container") or (containers[0] if containers else "")
            text = (
                f"pykops sandbox: pod {namespace}/{name}, container {container} is simulated; the sandbox "
                "runs no containers, so there are no logs.\n"
            )
            return Response(200, text.encode(), "text/plain")
        return self._render(req, res, obj)

    def _list(self, req: Request, res: Resource, namespace: str | None) -> Response:
        match = matcher(req.query.get("labelSelector", ""), req.query.get("fieldSelector", ""))
        kvs, rev = self.store.scan(self.list_prefix(res, namespace))
        items = [obj for kv in kvs if match(obj := self.out(res, kv))]
        if self._wants_table(req):
            include = req.query.get("includeObject", "Metadata")
            return _json_response(200, tables.table(res, items, include, str(rev)))
        return _json_response(
            200,
            {
                "kind": res.list_kind,
                "apiVersion": res.group_version,
                "metadata": {"resourceVersion": str(rev)},
                "items": items,
            },
        )

    # --- watch -------------------------------------------------------------------------------------------

    def _watch(self, req: Request, res: Resource, namespace: str | None, name: str | None) -> Response:
        match = matcher(req.query.get("labelSelector", ""), req.query.get("fieldSelector", ""))
        if name is not None:
            inner = match
            match = lambda obj: _meta(obj).get("name") == name and inner(obj)  # noqa: E731
        prefix = self.list_prefix(res, namespace)
        rv = req.query.get("resourceVersion", "")
        try:
            timeout = float(req.query.get("timeoutSeconds") or MAX_WATCH_SECONDS)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number") from None
        timeout = min(max(timeout, 0.0), MAX_WATCH_SECONDS)
        initial: list[dict[str, Any]] = []
        if rv in ("", "0"):
            kvs, rev = self.store.scan(prefix)
            initial = [obj for kv in kvs if match(obj := self.out(res, kv))]
            start = rev + 1
        else:
            try:
                start = int(rv) + 1
            except ValueError:
                raise bad_request(f"invalid resourceVersion {rv!r}") from None
        events, cancel = self.store.watch(prefix, start)

        as_table = self._wants_table(req)
        include = req.query.get("includeObject", "Metadata")

        def line(kind: str, obj: dict[str, Any]) -> bytes:
            if as_table and kind != "ERROR":
                obj = tables.table(res, [obj], include, str(_meta(obj).get("resourceVersion", "")))
            return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

        def stream() -> Iterator[bytes]:
            deadline = time.monotonic() + timeout
            last_check = time.monotonic()
            try:
                for obj in initial:
                    yield line("ADDED", obj)
                while not self.stopping.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        ev = events.get(timeout=min(1.0, remaining))
                    except queue.Empty:
                        if time.monotonic() - last_check > WATCH_QUORUM_CHECK_SECONDS:
                            # an etcd watch on a member that lost its quorum stays silent; the apiserver's
                            # watches end (etcd's require-leader), so check that etcd still answers
                            last_check = time.monotonic()
                            try:
                                self.store.revision()
                            except StoreError:
                                break
                        continue
                    if ev is None:
                        break
                    if ev.type == "CANCELED":
                        msg = f"too old resource version: {start - 1} ({ev.revision})"
                        yield line("ERROR", status_object(410, "Expired", msg))
                        break
                    if ev.type == "DELETE":
                        if ev.prev is not None:
                            old = self.out(res, ev.prev, ev.revision)
                            if match(old):
                                yield line("DELETED", old)
                        continue
                    assert ev.kv is not None
                    new = self.out(res, ev.kv)
                    new_match = match(new)
                    old_match = ev.prev is not None and match(self.out(res, ev.prev))
                    if ev.kv.create_revision == ev.kv.mod_revision or ev.prev is None:
                        if new_match:
                            yield line("ADDED", new)
                    elif new_match and old_match:
                        yield line("MODIFIED", new)
                    elif new_match:
                        yield line("ADDED", new)
                    elif old_match:
                        yield line("DELETED", new)
            finally:
                cancel()

        return Response(200, stream=stream())

    # --- create ------------------------------------------------------------------------------------------

    def _dry_run(self, req: Request) -> bool:
        return req.query.get("dryRun", "") == "All"

    def _create(self, req: Request, res: Resource, namespace: str | None) -> Response:
        body = self._read_body(req)
        obj = self.create_object(
            res, namespace, body, dry_run=self._dry_run(req), manager=req.query.get("fieldManager")
        )
        return self._render(req, res, obj, 201)

    def create_object(
        self,
        res: Resource,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        manager: str | None = None,
        operation: str = "Update",
    ) -> dict[str, Any]:
        """Create ``body`` as a new object; returns it as served. Also used by the bootstrap."""
        if not isinstance(body, dict):
            raise bad_request("the object must be a JSON object")
        obj = copy.deepcopy(body)
        kind = obj.get("kind")
        if kind and kind != res.kind:
            raise bad_request(f"the kind {kind!r} of the object does not match the resource {res.plural!r}")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        name = str(meta.get("name") or "")
        if not name:
            generate = meta.get("generateName")
            if not generate:
                raise invalid(res, "", "metadata.name: Required value: name or generateName is required")
            name = str(generate) + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
            meta["name"] = name
        if res.namespaced:
            body_ns = meta.get("namespace")
            if namespace is None:
                raise bad_request("a namespaced resource is created in a namespace path")
            if body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            ns_kv = self.store.get(self.key(_NAMESPACE, None, namespace))
            if ns_kv is None:
                raise not_found(_NAMESPACE, namespace)
            if _meta(ns_kv.obj).get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{res.plural} "{name}" is forbidden: unable to create new content in namespace '
                    f"{namespace} because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        for drop in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(drop, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if res.has_spec:
            meta["generation"] = 1
        if manager:
            meta["managedFields"] = [_managed_entry(manager, operation, res, body)]
        obj["apiVersion"] = res.group_version
        obj["kind"] = res.kind
        validate_object(res, obj)
        allocated: list[str] = []
        self._defaults_on_create(res, obj, dry_run, allocated)
        _zero_values(res, obj)
        key = self.key(res, namespace, name)
        if dry_run:
            existing = self.store.get(key)
            if existing is not None:
                raise already_exists(res, name)
            obj["metadata"]["resourceVersion"] = ""
            return obj
        try:
            rev = self.store.create(key, obj)
        except Conflict:
            for ip in allocated:
                self._release_ip(ip)
            raise already_exists(res, name) from None
        obj["metadata"]["resourceVersion"] = str(rev)
        if res is _NAMESPACE:
            self._namespace_controllers(name)
        if res is _CRDS:
            self.invalidate_crds()
        return obj

    def _namespace_controllers(self, namespace: str) -> None:
        """What controller-manager's service-account and root-CA publisher controllers add to a new namespace:
        the ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap."""
        owned: list[tuple[Resource, dict[str, Any]]] = [
            (_SERVICE_ACCOUNTS, {"metadata": {"name": "default"}})
        ]
        if self.root_ca_pem:
            meta = {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": _ROOT_CA_NOTE}}
            owned.append((_CONFIG_MAPS, {"metadata": meta, "data": {"ca.crt": self.root_ca_pem}}))
        for res, body in owned:
            try:
                self.create_object(res, namespace, body)
            except ApiError as err:
                if err.code != 409:
                    raise

    def _defaults_on_create(
        self, res: Resource, obj: dict[str, Any], dry_run: bool, allocated: list[str]
    ) -> None:
        spec = obj.get("spec")
        if res is _CRDS and isinstance(spec, dict):
            # what the apiextensions controllers report at once: names accepted, the API established
            now = now_rfc3339()
            obj["status"] = {
                "acceptedNames": spec.get("names") or {},
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
                    for t, r, m in (
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    )
                ],
                "storedVersions": [v.get("name") for v in spec.get("versions") or [] if v.get("storage")],
            }
            self.invalidate_crds()
        if res is _NAMESPACE:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif res is _PODS and isinstance(spec, dict):
            status = obj.setdefault("status", {})
            if not isinstance(status, dict) or not status.get("phase"):
                obj["status"] = {**(status if isinstance(status, dict) else {}), "phase": "Pending"}
            obj["status"].setdefault("qosClass", "BestEffort")
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            pc_name = spec.get("priorityClassName")
            if pc_name:
                pc = self.store.get(self.key(_PRIORITY_CLASSES, None, str(pc_name)))
                if pc is None:
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'pods "{obj["metadata"]["name"]}" is forbidden: no PriorityClass with name '
                        f"{pc_name} was found",
                    )
                spec["priority"] = int(pc.obj.get("value", 0))
                if pc.obj.get("preemptionPolicy"):
                    spec.setdefault("preemptionPolicy", pc.obj["preemptionPolicy"])
            else:
                spec.setdefault("priority", 0)
        elif res is _SERVICES and isinstance(spec, dict):
            svc_type = spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    port.setdefault("targetPort", port.get("port"))
            if svc_type != "ExternalName":
                ip = spec.get("clusterIP")
                if ip in (None, ""):
                    ip = self._allocate_ip(obj, dry_run)
                    if not dry_run:
                        allocated.append(ip)
                    spec["clusterIP"] = ip
                elif ip != "None":
                    self._claim_ip(str(ip), obj, dry_run)
                    if not dry_run:
                        allocated.append(str(ip))
                spec["clusterIPs"] = [spec["clusterIP"]]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
                spec.setdefault("internalTrafficPolicy", "Cluster")
            if svc_type in ("NodePort", "LoadBalancer"):
                used = self._used_node_ports()
                for port in spec.get("ports") or []:
                    if isinstance(port, dict) and not port.get("nodePort"):
                        port["nodePort"] = next(p for p in range(30000, 32768) if p not in used)
                        used.add(port["nodePort"])
                spec.setdefault("externalTrafficPolicy", "Cluster")
            obj.setdefault("status", {"loadBalancer": {}})
        elif res.group == "apps" and res.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            if isinstance(spec, dict):
                spec.setdefault("replicas", 1)
                spec.setdefault("revisionHistoryLimit", 10)
                if res.kind == "Deployment":
                    spec.setdefault(
                        "strategy",
                        {
                            "type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                        },
                    )
                    spec.setdefault("progressDeadlineSeconds", 600)
            obj.setdefault("status", {})
        elif res.kind == "DaemonSet" and isinstance(spec, dict):
            spec.setdefault(
                "updateStrategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            )
            obj.setdefault("status", {})

    # --- service IPs -------------------------------------------------------------------------------------

    def _ip_key(self, ip: str) -> str:
        return f"{self.prefix}/_serviceipallocations/{ip}"

    def _claim_ip(self, ip: str, svc: dict[str, Any], dry_run: bool) -> None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise invalid(
                _SERVICES,
                svc["metadata"]["name"],
                f"spec.clusterIP: Invalid value: {ip!r}: not an IP address",
            ) from None
        if address not in self.service_net:
            raise invalid(
                _SERVICES,
                svc["metadata"]["name"],
                f"spec.clusterIP: Invalid value: {ip!r}: not in {self.service_net}",
            )
        owner = f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"
        if dry_run:
            if self.store.get(self._ip_key(ip)) is not None:
                raise invalid(
                    _SERVICES,
                    svc["metadata"]["name"],
                    f"spec.clusterIP: Invalid value: {ip!r}: already allocated",
                )
            return
        try:
            self.store.create(self._ip_key(ip), {"service": owner})
        except Conflict:
            raise invalid(
                _SERVICES,
                svc["metadata"]["name"],
                f"spec.clusterIP: Invalid value: {ip!r}: already allocated",
            ) from None

    def _allocate_ip(self, svc: dict[str, Any], dry_run: bool) -> str:
        kvs, _ = self.store.scan(f"{self.prefix}/_serviceipallocations/")
        used = {kv.key.rsplit("/", 1)[1] for kv in kvs}
        owner = f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"
        for host in self.service_net.hosts():
            ip = str(host)
            if ip in used:
                continue
            if dry_run:
                return ip
            try:
                self.store.create(self._ip_key(ip), {"service": owner})
                return ip
            except Conflict:
                continue
        raise ApiError(500, "InternalError", f"no free address left in the service range {self.service_net}")

    def _release_ip(self, ip: str) -> None:
        kv = self.store.get(self._ip_key(ip))
        if kv is not None:
            with contextlib.suppress(Conflict):
                self.store.delete(kv.key, kv.mod_revision)

    def _used_node_ports(self) -> set[int]:
        kvs, _ = self.store.scan(self.list_prefix(_SERVICES, None))
        used: set[int] = set()
        for kv in kvs:
            for port in (kv.obj.get("spec") or {}).get("ports") or []:
                if isinstance(port, dict) and port.get("nodePort"):
                    used.add(int(port["nodePort"]))
        return used

    # --- update and patch --------------------------------------------------------------------------------

    def _update(
        self, req: Request, res: Resource, namespace: str | None, name: str, sub: str | None
    ) -> Response:
        body = self._read_body(req)
        if not isinstance(body, dict):
            raise bad_request("the object must be a JSON object")
        body_name = _meta(body).get("name")
        if body_name and body_name != name:
            raise bad_request("the name of the object does not match the name on the URL")
        want_rv = str(_meta(body).get("resourceVersion") or "")
        if sub == "scale":
            replicas = (body.get("spec") or {}).get("replicas")

            def set_replicas(cur: dict[str, Any]) -> dict[str, Any]:
                cur.setdefault("spec", {})["replicas"] = replicas
                return cur

            obj = self.guaranteed_update(
                res, namespace, name, set_replicas, want_rv, dry_run=self._dry_run(req)
            )
            return _json_response(200, _scale_of(res, obj))

        def replace(cur: dict[str, Any]) -> dict[str, Any]:
            return copy.deepcopy(body)

        obj = self.guaranteed_update(
            res,
            namespace,
            name,
            replace,
            want_rv,
            sub=sub,
            dry_run=self._dry_run(req),
            manager=req.query.get("fieldManager"),
        )
        return self._render(req, res, obj)

    def _patch(
        self, req: Request, res: Resource, namespace: str | None, name: str, sub: str | None
    ) -> Response:
        ctype = req.headers.get("Content-Type", "").split(";")[0].strip()
        body = self._read_body(req)
        dry_run = self._dry_run(req)
        manager = req.query.get("fieldManager")
        if ctype == "application/apply-patch+yaml":
            if not manager:
                raise bad_request("PATCH requests with apply content type require fieldManager")
            if not isinstance(body, dict):
                raise bad_request("the applied configuration must be an object")
            if self.store.get(self.key(res, namespace, name)) is None and sub is None:
                applied = copy.deepcopy(body)
                applied.setdefault("metadata", {})["name"] = name
                obj = self.create_object(
                    res, namespace, applied, dry_run=dry_run, manager=manager, operation="Apply"
                )
                return self._render(req, res, obj, 201)
            fn: Callable[[Any, Any], Any] = patch.strategic_merge
            operation = "Apply"
        elif ctype == "application/merge-patch+json":
            fn, operation = patch.merge_patch, "Update"
        elif ctype == "application/strategic-merge-patch+json":
            fn, operation = patch.strategic_merge, "Update"
        elif ctype == "application/json-patch+json":
            fn, operation = patch.json_patch, "Update"
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
                f"application/strategic-merge-patch+json (got {ctype!r})",
            )

        if sub == "scale":

            def scale_patch(cur: dict[str, Any]) -> dict[str, Any]:
                scale = fn(_scale_of(res, self._as_served(res, cur)), body)
                cur.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas")
                return cur

            obj = self.guaranteed_update(res, namespace, name, scale_patch, "", dry_run=dry_run)
            return _json_response(200, _scale_of(res, obj))

        def apply(cur: dict[str, Any]) -> dict[str, Any]:
            patched = fn(cur, body)
            if not isinstance(patched, dict):
                raise bad_request("the patch must produce an object")
            return patched

        want_rv = str(_meta(body).get("resourceVersion") or "") if isinstance(body, dict) else ""
        obj = self.guaranteed_update(
            res,
            namespace,
            name,
            apply,
            want_rv,
            sub=sub,
            dry_run=dry_run,
            manager=manager,
            operation=operation,
            applied=body if operation == "Apply" else None,
        )
        return self._render(req, res, obj)

    def _as_served(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = res.group_version
        out["kind"] = res.kind
        return out

    def _read_at(self, res: Resource, key: str, name: str, want_rv: str) -> tuple[Any, dict[str, Any]]:
        """The stored object and its etcd entry: 404 when absent, 409 when ``want_rv`` (if given) is not its
        resourceVersion."""
        kv = self.store.get(key)
        if kv is None:
            raise not_found(res, name)
        if want_rv and want_rv != str(kv.mod_revision):
            raise conflict(res, name)
        return kv, self.out(res, kv)

    def guaranteed_update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        mutate: Callable[[dict[str, Any]], dict[str, Any]],
        want_rv: str = "",
        *,
        sub: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
        operation: str = "Update",
        applied: Any = None,
    ) -> dict[str, Any]:
        """Read, mutate, write-if-unchanged; retried on conflicts unless the caller gave a resourceVersion."""
        key = self.key(res, namespace, name)
        for _attempt in range(20):
            kv, current = self._read_at(res, key, name, want_rv)
            new = mutate(copy.deepcopy(current))
            new = self._merge_update(res, current, new, sub)
            validate_object(res, new)
            if manager:
                _record_manager(new, manager, operation, res, applied if applied is not None else new)
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                if dry_run:
                    return new
                try:
                    rev = self.store.delete(key, kv.mod_revision)
                except Conflict:
                    if want_rv:
                        raise conflict(res, name) from None
                    continue
                self._after_delete(res, current)
                new["metadata"]["resourceVersion"] = str(rev)
                return new
            if dry_run:
                return new
            stored = copy.deepcopy(new)
            stored["metadata"].pop("resourceVersion", None)
            try:
                rev = self.store.update(key, stored, kv.mod_revision)
            except Conflict:
                if want_rv:
                    raise conflict(res, name) from None
                continue
            new["metadata"]["resourceVersion"] = str(rev)
            if res is _CRDS:
                self.invalidate_crds()
            return new
        raise conflict(res, name)

    def _merge_update(
        self, res: Resource, current: dict[str, Any], new: dict[str, Any], sub: str | None
    ) -> dict[str, Any]:
        """What an update may change: the status subresource only status, the main resource not status."""
        if not isinstance(new.get("metadata"), dict):
            new["metadata"] = {}
        if sub == "status":
            merged = copy.deepcopy(current)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif "status" in res.subresources and sub is None:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        meta, old_meta = new["metadata"], current["metadata"]
        for keep in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "generation"):
            if keep in old_meta:
                meta[keep] = old_meta[keep]
            else:
                meta.pop(keep, None)
        if res.has_spec and sub is None and new.get("spec") != current.get("spec"):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if res is _NAMESPACE:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        if res is _SERVICES and isinstance(new.get("spec"), dict):
            # the allocated address is immutable; an update that leaves it out keeps it
            old_spec = current.get("spec") or {}
            for key in ("clusterIP", "clusterIPs"):
                if key in old_spec and not new["spec"].get(key):
                    new["spec"][key] = old_spec[key]
        if res is _PODS and sub is None:
            # spec.nodeName is set by the binding subresource; an update cannot move a pod.
            old_node = (current.get("spec") or {}).get("nodeName")
            if isinstance(new.get("spec"), dict) and old_node:
                new["spec"]["nodeName"] = old_node
        new["apiVersion"] = res.group_version
        new["kind"] = res.kind
        _zero_values(res, new)
        return new

    # --- delete ------------------------------------------------------------------------------------------

    def _delete(self, req: Request, res: Resource, namespace: str | None, name: str) -> Response:
        options: dict[str, Any] = {}
        if req.body:
            try:
                options = json.loads(req.body) or {}
            except ValueError:
                raise bad_request("the delete options are not JSON") from None
        policy = req.query.get("propagationPolicy") or options.get("propagationPolicy") or ""
        precondition = (options.get("preconditions") or {}).get("resourceVersion") or ""
        obj = self.delete_object(
            res, namespace, name, policy=policy, dry_run=self._dry_run(req), precondition_rv=precondition
        )
        if obj["metadata"].get("deletionTimestamp") and obj["metadata"].get("finalizers"):
            return _json_response(200, obj)
        if res.kind in ("Pod", "Namespace", "Service", "Node", "PersistentVolume", "PersistentVolumeClaim"):
            return _json_response(200, obj)
        details: dict[str, Any] = {"name": name, "kind": res.plural, "uid": obj["metadata"].get("uid")}
        if res.group:
            details["group"] = res.group
        return _json_response(200, status_object(200, "", "", details))

    def delete_object(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        policy: str = "",
        dry_run: bool = False,
        precondition_rv: str = "",
    ) -> dict[str, Any]:
        """Delete now, or mark for deletion when finalizers (or Foreground/Orphan propagation) hold it."""
        key = self.key(res, namespace, name)
        for _attempt in range(20):
            kv, obj = self._read_at(res, key, name, precondition_rv)
            meta = obj["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if res is _NAMESPACE:
                finalizers = [f for f in finalizers if f not in ("kubernetes",)]
            if finalizers:
                if meta.get("deletionTimestamp") and finalizers == meta.get("finalizers"):
                    return obj
                meta["finalizers"] = finalizers
                meta.setdefault("deletionTimestamp", now_rfc3339())
                meta.setdefault("deletionGracePeriodSeconds", 0)
                if dry_run:
                    return obj
                stored = copy.deepcopy(obj)
                stored["metadata"].pop("resourceVersion", None)
                try:
                    rev = self.store.update(key, stored, kv.mod_revision)
                except Conflict:
                    continue
                meta["resourceVersion"] = str(rev)
                return obj
            if dry_run:
                return obj
            if res is _NAMESPACE:
                self._delete_namespace_contents(name)
            try:
                self.store.delete(key, kv.mod_revision)
            except Conflict:
                continue
            self._after_delete(res, obj)
            return obj
        raise conflict(res, name)

    def _after_delete(self, res: Resource, obj: dict[str, Any]) -> None:
        if res is _CRDS:
            # the custom resources go with their definition
            for custom in reg.from_crd(obj)[:1]:
                kvs, _ = self.store.scan(self.list_prefix(custom, None))
                for kv in kvs:
                    with contextlib.suppress(Conflict):
                        self.store.delete(kv.key, kv.mod_revision)
            self.invalidate_crds()
        if res is _SERVICES:
            ip = (obj.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                self._release_ip(str(ip))

    def _delete_namespace_contents(self, namespace: str) -> None:
        """The namespace controller's job, done at once: every namespaced object in it goes."""
        for res in self.all_resources():
            if not res.namespaced or res.group == "events.k8s.io":
                continue
            kvs, _ = self.store.scan(self.list_prefix(res, namespace))
            for kv in kvs:
                with contextlib.suppress(Conflict):
                    self.store.delete(kv.key, kv.mod_revision)
                self._after_delete(res, kv.obj)

    def _delete_collection(self, req: Request, res: Resource, namespace: str | None) -> Response:
        match = matcher(req.query.get("labelSelector", ""), req.query.get("fieldSelector", ""))
        kvs, _ = self.store.scan(self.list_prefix(res, namespace))
        policy = req.query.get("propagationPolicy", "")
        for kv in kvs:
            obj = self.out(res, kv)
            if not match(obj):
                continue
            meta = obj["metadata"]
            try:
                self.delete_object(
                    res, meta.get("namespace"), meta["name"], policy=policy, dry_run=self._dry_run(req)
                )
            except ApiError as err:
                if err.code != 404:
                    raise
        return _json_response(200, status_object(200, "", ""))

    # --- pods/binding and pods/eviction -----------------------------------------------------------------

    def _bind(self, req: Request, res: Resource, namespace: str | None, name: str) -> Response:
        body = self._read_body(req)
        target = (body or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise invalid(res, name, "target.name: Required value")

        def bind(cur: dict[str, Any]) -> dict[str, Any]:
            spec = cur.setdefault("spec", {})
            if spec.get("nodeName"):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned '
                    f'to node "{spec["nodeName"]}"',
                )
            spec["nodeName"] = node
            status = cur.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_rfc3339(),
                }
            )
            status["conditions"] = conds
            return cur

        # the binding writes spec.nodeName and a status condition: write the whole object as the status path
        key = self.key(res, namespace, name)
        for _attempt in range(20):
            kv = self.store.get(key)
            if kv is None:
                raise not_found(res, name)
            new = bind(self.out(res, kv))
            stored = copy.deepcopy(new)
            stored["metadata"].pop("resourceVersion", None)
            if self._dry_run(req):
                break
            try:
                self.store.update(key, stored, kv.mod_revision)
                break
            except Conflict:
                continue
        else:
            raise conflict(res, name)
        return _json_response(201, status_object(201, "", ""))

    def _evict(self, req: Request, res: Resource, namespace: str | None, name: str) -> Response:
        """policy/v1 Eviction: each PDB matching the pod must allow a disruption; the eviction records the pod
        in the PDB's ``status.disruptedPods`` with a conditional write, so concurrent evictions (kubectl drain
        evicts in parallel) cannot both spend the same allowed disruption."""
        assert namespace is not None
        body = self._read_body(req) if req.body else {}
        dry_run = self._dry_run(req) or "All" in ((body or {}).get("deleteOptions") or {}).get("dryRun", [])
        for _attempt in range(20):
            pod = self.out(res, self._get_kv(res, namespace, name))
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") or _meta(pod).get("deletionTimestamp"):
                break
            if self._spend_disruptions(pod, dry_run):
                break
        else:
            raise conflict(res, name)
        self.delete_object(res, namespace, name, dry_run=dry_run)
        return _json_response(201, status_object(201, "", ""))

    def _spend_disruptions(self, pod: dict[str, Any], dry_run: bool) -> bool:
        """False when a PDB changed under us (retry); raises 429 when a PDB allows no disruption."""
        name = _meta(pod)["name"]
        for pdb_kv, pdb in self._pdbs_for(pod):
            allowed = self._disruptions_allowed(pdb)
            status = pdb["status"]
            if allowed <= 0:
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    {
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                f"{status['desiredHealthy']} healthy pods and has {status['currentHealthy']} "
                                "currently",
                            }
                        ]
                    },
                )
            if dry_run:
                continue
            status["disruptedPods"] = {**(status.get("disruptedPods") or {}), name: now_rfc3339()}
            status["disruptionsAllowed"] = allowed - 1
            stored = copy.deepcopy(pdb)
            stored["metadata"].pop("resourceVersion", None)
            try:
                self.store.update(pdb_kv.key, stored, pdb_kv.mod_revision)
            except Conflict:
                return False
        return True

    def _pdbs_for(self, pod: dict[str, Any]) -> list[tuple[KV, dict[str, Any]]]:
        namespace = _meta(pod).get("namespace")
        kvs, _ = self.store.scan(self.list_prefix(_PDBS, namespace))
        out = []
        for kv in kvs:
            pdb = self.out(_PDBS, kv)
            try:
                reqs = selector_from_label_selector((pdb.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if reqs is None:
                continue
            labels = _meta(pod).get("labels") or {}
            if all(r.matches(labels) for r in reqs):
                out.append((kv, pdb))
        return out

    def _disruptions_allowed(self, pdb: dict[str, Any]) -> int:
        """Computed from the live pods (no disruption controller runs): healthy = Running and Ready."""
        spec = pdb.get("spec") or {}
        reqs = selector_from_label_selector(spec.get("selector")) or []
        kvs, _ = self.store.scan(self.list_prefix(_PODS, _meta(pdb).get("namespace")))
        pods = [kv.obj for kv in kvs if all(r.matches(_meta(kv.obj).get("labels") or {}) for r in reqs)]
        pods = [p for p in pods if not _meta(p).get("deletionTimestamp")]
        names = {_meta(p).get("name") for p in pods}
        status = pdb.setdefault("status", {})
        # pods being evicted (recorded by earlier evictions) no longer count as healthy; gone ones are dropped
        disrupted = {k: v for k, v in (status.get("disruptedPods") or {}).items() if k in names}
        status["disruptedPods"] = disrupted
        expected = len(pods)
        healthy = sum(1 for p in pods if _pod_healthy(p) and _meta(p).get("name") not in disrupted)
        if "minAvailable" in spec and spec["minAvailable"] is not None:
            desired = _scaled(spec["minAvailable"], expected, round_up=True)
        elif "maxUnavailable" in spec and spec["maxUnavailable"] is not None:
            desired = expected - _scaled(spec["maxUnavailable"], expected, round_up=True)
        else:
            desired = expected
        status.update(desiredHealthy=desired, currentHealthy=healthy, expectedPods=expected)
        return max(healthy - desired, 0)

    # --- bootstrap ---------------------------------------------------------------------------------------

    def ensure_defaults(self) -> None:
        bootstrap.ensure(self)
        self.bootstrapped.set()


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PATH_SEGMENT_GROUPS = ("rbac.authorization.k8s.io",)  # names like system:discovery


def validate_object(res: Resource, obj: dict[str, Any]) -> None:
    """The checks every object gets (the apiserver's ObjectMeta validation, and the shape of spec/status);
    kind-specific validation is not done."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    shown = name if isinstance(name, str) else ""
    if not isinstance(meta, dict):
        raise invalid(res, shown, "metadata: Invalid value: must be an object")
    if not isinstance(name, str) or not name:
        raise invalid(res, shown, "metadata.name: Invalid value: must be a non-empty string")
    if res.group in _PATH_SEGMENT_GROUPS:
        if name in (".", "..") or "/" in name or "%" in name:
            raise invalid(res, name, f"metadata.name: Invalid value: {name!r}: may not contain '/' or '%'")
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise invalid(
            res,
            name,
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower "
            "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    for field_name in ("labels", "annotations"):
        value = meta.get(field_name)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise invalid(res, name, f"metadata.{field_name}: Invalid value: must be a map of strings")
    for list_field in ("finalizers", "ownerReferences", "managedFields"):
        if meta.get(list_field) is not None and not isinstance(meta[list_field], list):
            raise invalid(res, name, f"metadata.{list_field}: Invalid value: must be a list")
    for section in ("spec", "status"):
        if obj.get(section) is not None and not isinstance(obj[section], dict) and res.kind != "Event":
            raise invalid(res, name, f"{section}: Invalid value: must be an object")


# Status fields the apiserver always serializes (Go ints and structs without omitempty); the Python client
# (kubernetes >= 35, pydantic models) rejects objects without them.
_ZERO_STATUS: dict[str, dict[str, Any]] = {
    "DaemonSet": {
        "currentNumberScheduled": 0,
        "desiredNumberScheduled": 0,
        "numberMisscheduled": 0,
        "numberReady": 0,
    },
    "ReplicaSet": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "PodDisruptionBudget": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
}
_NODE_INFO = (
    "architecture",
    "bootID",
    "containerRuntimeVersion",
    "kernelVersion",
    "kubeProxyVersion",
    "kubeletVersion",
    "machineID",
    "operatingSystem",
    "osImage",
    "systemUUID",
)


def _zero_values(res: Resource, obj: dict[str, Any]) -> None:
    zero = _ZERO_STATUS.get(res.kind)
    if zero is not None and res.group in ("apps", "policy"):
        status = obj.get("status")
        if not isinstance(status, dict):
            status = obj["status"] = {}
        for key, value in zero.items():
            status.setdefault(key, value)
    elif res.kind == "Node":
        status = obj.get("status")
        if isinstance(status, dict) and isinstance(status.get("nodeInfo"), dict):
            for key in _NODE_INFO:
                status["nodeInfo"].setdefault(key, "")
    elif res.kind == "VolumeAttachment" and isinstance(obj.get("status"), dict):
        obj["status"].setdefault("attached", False)


def _pod_healthy(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1])
        exact = pct * total
        return -(-exact // 100) if round_up else exact // 100
    return int(value)


def _scale_of(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = ""
    if isinstance(spec.get("selector"), dict):
        reqs = [f"{k}={v}" for k, v in (spec["selector"].get("matchLabels") or {}).items()]
        selector = ",".join(reqs)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector},
    }


def _managed_entry(manager: str, operation: str, res: Resource, fields_from: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": res.group_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": patch.fields_v1(fields_from if isinstance(fields_from, dict) else {}),
    }


def _record_manager(
    obj: dict[str, Any], manager: str, operation: str, res: Resource, fields_from: Any
) -> None:
    meta = obj.setdefault("metadata", {})
    entries = [
        e
        for e in meta.get("managedFields") or []
        if not (e.get("manager") == manager and e.get("operation") == operation)
    ]
    entry = _managed_entry(manager, operation, res, fields_from)
    if operation == "Apply":
        entry["fieldsV1"].pop("f:status", None)
    entries.append(entry)
    meta["managedFields"] = entries
