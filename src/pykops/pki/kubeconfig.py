"""kubeconfig documents (pure): build one for a cluster, merge it into an existing one, remove a cluster.

The shape is kubectl's ``Config`` (``apiVersion: v1``, ``kind: Config``; lists of named ``clusters``,
``users`` and ``contexts``; ``current-context``). Like kops (``pkg/kubeconfig/kubecfg_builder.go``) the
cluster, the context and the admin user are all named after the cluster, the CA bundle and the client
certificate are embedded (``*-data``, base64) and ``tls-server-name`` is the cluster's internal API name,
so that the API server's certificate verifies whichever address (load balancer, DNS name) is used.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

import yaml

from pykops.errors import PykopsError

Config = dict[str, Any]

_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


class KubeconfigError(PykopsError):
    """A kubeconfig that cannot be read or changed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def empty_kubeconfig() -> Config:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": "",
    }


def build_kubeconfig(
    cluster: str,
    server: str,
    ca_pem: bytes,
    *,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    user: str | None = None,
    tls_server_name: str | None = None,
) -> Config:
    """A kubeconfig with one cluster and one context named ``cluster``.

    With a client certificate and key, a user named ``user`` (default: the cluster's name) holds them and
    the context uses it. Without them, ``user`` (if given) names an existing user of the kubeconfig this
    will be merged into, and the context refers to it; with neither, the context has no user.
    """
    if (client_cert_pem is None) != (client_key_pem is None):
        raise KubeconfigError("a client certificate needs its key (and a key its certificate)")
    if not server.startswith("https://"):
        raise KubeconfigError(f"the API server URL must start with https://, got {server!r}")
    cluster_entry: dict[str, Any] = {"certificate-authority-data": _b64(ca_pem), "server": server}
    if tls_server_name:
        cluster_entry["tls-server-name"] = tls_server_name
    config = empty_kubeconfig()
    config["clusters"] = [{"name": cluster, "cluster": cluster_entry}]
    context: dict[str, Any] = {"cluster": cluster}
    if client_cert_pem is not None and client_key_pem is not None:
        user_name = user or cluster
        config["users"] = [
            {
                "name": user_name,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ]
        context["user"] = user_name
    elif user:
        context["user"] = user
    config["contexts"] = [{"name": cluster, "context": context}]
    config["current-context"] = cluster
    return config


def _named(config: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    entries = config.get(section)
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise KubeconfigError(f"the kubeconfig's {section} must be a list of entries with a name")
    return entries


def user_names(config: Mapping[str, Any]) -> list[str]:
    return [str(e["name"]) for e in _named(config, "users")]


def merge_kubeconfig(existing: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Config:
    """``existing`` with ``new``'s clusters, users and contexts replacing the same-named ones (others are
    kept, in order) and ``new``'s current context made current. Neither argument is modified.

    As kops does, a context of ``new`` without a user keeps the user of the context it replaces, and a
    context naming a user that neither document has is refused.
    """
    merged: Config = copy.deepcopy(dict(existing)) if existing else empty_kubeconfig()
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    merged.setdefault("preferences", {})
    for section, _ in _SECTIONS:
        old_entries = _named(merged, section)
        old_by_name = {e["name"]: e for e in old_entries}
        out = list(old_entries)
        for entry in _named(new, section):
            entry = copy.deepcopy(entry)
            previous = old_by_name.get(entry["name"])
            if section == "contexts" and previous is not None:
                old_user = (previous.get("context") or {}).get("user")
                if old_user and not entry.get("context", {}).get("user"):
                    entry.setdefault("context", {})["user"] = old_user
            if previous is not None:
                out[out.index(previous)] = entry
            else:
                out.append(entry)
        merged[section] = out
    known_users = set(user_names(merged))
    for ctx in _named(new, "contexts"):
        wanted = (ctx.get("context") or {}).get("user")
        if wanted and wanted not in known_users:
            raise KubeconfigError(
                f"could not find user {wanted!r} in the kubeconfig "
                f"(users: {', '.join(sorted(known_users)) or 'none'})"
            )
    if new.get("current-context"):
        merged["current-context"] = new["current-context"]
    return merged


def remove_cluster(config: Mapping[str, Any], cluster: str) -> tuple[Config, bool]:
    """``config`` without the cluster, context and users kops writes for ``cluster`` (the user named after
    the cluster and ``<cluster>-basic-auth``); the current context is cleared if it was the cluster's.
    Returns the new document and whether anything was removed."""
    out: Config = copy.deepcopy(dict(config))
    doomed = {
        "clusters": {cluster},
        "users": {cluster, f"{cluster}-basic-auth"},
        "contexts": {cluster},
    }
    changed = False
    for section, names in doomed.items():
        entries = _named(out, section)
        kept = [e for e in entries if e["name"] not in names]
        if len(kept) != len(entries):
            changed = True
            out[section] = kept
    if out.get("current-context") == cluster:
        out["current-context"] = ""
        changed = True
    return out, changed


def parse_kubeconfig(text: str, source: str) -> Config:
    """A kubeconfig document from YAML (an empty file is an empty kubeconfig)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{source}: not valid YAML: {exc}") from None
    if doc is None:
        return empty_kubeconfig()
    if not isinstance(doc, dict):
        raise KubeconfigError(
            f"{source}: not a kubeconfig (expected a mapping with clusters, users, contexts)"
        )
    if doc.get("kind", "Config") != "Config":
        raise KubeconfigError(f"{source}: kind is {doc.get('kind')!r}, expected Config")
    for section, _ in _SECTIONS:
        try:
            _named(doc, section)
        except KubeconfigError as exc:
            raise KubeconfigError(f"{source}: {exc}") from None
    return doc


def dump_kubeconfig(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
