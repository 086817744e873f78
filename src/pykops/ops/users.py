"""``create user`` / ``delete user``: kubeconfigs for people, with RBAC bindings made through the API.

A person gets a client certificate signed by the cluster CA (``CN=<name>``, ``O=<group>``...) with a short
lifetime, in a kubeconfig of their own, and a RoleBinding (``--namespace``) or ClusterRoleBinding that grants
the chosen ClusterRole to that user. Kubernetes cannot revoke a client certificate: ``delete user`` removes
the bindings (the certificate still authenticates, but is allowed nothing beyond ``system:authenticated``),
and the certificate stops working when its lifetime ends. That is why the lifetime is short by default.

Bindings carry the label ``pykops.io/user=<name>`` so that ``delete user`` finds every one it made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pykops.api.models import Cluster
from pykops.errors import PykopsError, UsageError
from pykops.pki.ca import issue
from pykops.pki.kubeconfig import Config, build_kubeconfig
from pykops.state.keystore import KUBERNETES_CA, Keystore
from pykops.state.store import StateStore

USER_LABEL = "pykops.io/user"
DEFAULT_USER_TTL = timedelta(hours=24)
ROLE_ALIASES = {"view": "view", "edit": "edit", "admin": "admin", "cluster-admin": "cluster-admin"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.@]*[a-z0-9])?$")
_RESERVED_GROUPS = ("system:masters",)


class UserError(PykopsError):
    """A user could not be created or deleted."""


@dataclass(frozen=True)
class UserRequest:
    name: str
    groups: tuple[str, ...]
    role: str
    namespace: str | None
    ttl: timedelta


def check_request(
    name: str, groups: tuple[str, ...], role: str, namespace: str | None, ttl: timedelta
) -> UserRequest:
    """Validate a ``create user`` request before anything is issued or sent (pure)."""
    if name.startswith("system:") or any(g in _RESERVED_GROUPS for g in groups):
        raise UsageError(
            "refusing to issue a certificate in system:masters or with a system: name: that would bypass "
            "RBAC; use --role cluster-admin: full access through a binding that delete user can remove"
        )
    if not _NAME.match(name) or len(name) > 200:
        raise UsageError(
            f"user name {name!r} is not valid: use lower-case letters, digits, '-', '.' and '@' "
            "(it becomes the certificate's CN and the RBAC subject)"
        )
    for group in groups:
        if not group.strip():
            raise UsageError("--group must not be empty")
    if not role:
        raise UsageError("--role must not be empty (view, edit, admin, or the name of a ClusterRole)")
    if namespace is not None and not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", namespace):
        raise UsageError(f"--namespace {namespace!r} is not a valid namespace name")
    if ttl <= timedelta(0):
        raise UsageError("--ttl must be positive")
    if ttl > timedelta(days=366):
        raise UsageError(
            "--ttl longer than a year refused: a client certificate cannot be revoked, keep it short"
        )
    return UserRequest(name, groups, ROLE_ALIASES.get(role, role), namespace, ttl)


def binding_name(user: str) -> str:
    return f"pykops-user-{user}".replace("@", "-at-")[:253]


def binding_for(request: UserRequest) -> dict[str, Any]:
    """The RoleBinding (with a namespace) or ClusterRoleBinding that grants the role to the user (pure)."""
    metadata: dict[str, Any] = {
        "name": binding_name(request.name),
        "labels": {USER_LABEL: request.name.replace("@", "-at-"), "app.kubernetes.io/managed-by": "pykops"},
        "annotations": {"pykops.io/user-name": request.name},
    }
    kind = "ClusterRoleBinding"
    if request.namespace:
        metadata["namespace"] = request.namespace
        kind = "RoleBinding"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": request.role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": request.name}],
    }


def user_kubeconfig(store: StateStore, cluster: Cluster, server: str, request: UserRequest) -> Config:
    """A kubeconfig with a fresh client certificate for the user (nothing is written)."""
    from pykops.ops.kubeconfig import internal_api_name

    keyset = Keystore(store, cluster.name).require(KUBERNETES_CA)
    client = issue(
        keyset.primary_keypair(),
        common_name=request.name,
        organization=list(request.groups),
        usage="client",
        validity=request.ttl,
    )
    return build_kubeconfig(
        cluster.name,
        server,
        keyset.ca_bundle(),
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
        user=f"{request.name}@{cluster.name}",
        tls_server_name=internal_api_name(cluster),
    )


def _api_error(exc: Exception, what: str) -> UserError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    detail = f"HTTP {status} {reason}" if status else str(exc).splitlines()[0]
    if status == 403:
        return UserError(f"{what}: the API refused (forbidden): your credentials cannot manage RBAC bindings")
    return UserError(f"{what}: {detail}")


def apply_binding(api: Any, binding: dict[str, Any]) -> str:
    """Create or replace the binding through the API; returns ``created`` or ``updated``."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac: Any = client.RbacAuthorizationV1Api(api)
    name = binding["metadata"]["name"]
    namespace = binding["metadata"].get("namespace")
    try:
        if namespace:
            try:
                rbac.create_namespaced_role_binding(namespace, binding)
                return "created"
            except ApiException as exc:
                if exc.status != 409:
                    raise
            rbac.replace_namespaced_role_binding(name, namespace, binding)
            return "updated"
        try:
            rbac.create_cluster_role_binding(binding)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        rbac.replace_cluster_role_binding(name, binding)
        return "updated"
    except ApiException as exc:
        raise _api_error(exc, f"cannot create the binding {name}") from None
    except OSError as exc:  # connection refused, TLS...
        raise UserError(f"cannot reach the cluster's API to create the binding {name}: {exc}") from None


def delete_bindings(api: Any, user: str) -> list[str]:
    """Delete every binding ``create user`` made for ``user``; returns ``Kind/namespace/name`` of each."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac: Any = client.RbacAuthorizationV1Api(api)
    selector = f"{USER_LABEL}={user.replace('@', '-at-')}"
    removed: list[str] = []
    try:
        for crb in rbac.list_cluster_role_binding(label_selector=selector).items:
            meta: Any = crb.metadata
            rbac.delete_cluster_role_binding(meta.name)
            removed.append(f"ClusterRoleBinding/{meta.name}")
        for rb in rbac.list_role_binding_for_all_namespaces(label_selector=selector).items:
            meta = rb.metadata
            rbac.delete_namespaced_role_binding(meta.name, meta.namespace)
            removed.append(f"RoleBinding/{meta.namespace}/{meta.name}")
    except ApiException as exc:
        raise _api_error(exc, f"cannot delete the bindings of user {user}") from None
    except OSError as exc:
        raise UserError(f"cannot reach the cluster's API: {exc}") from None
    return removed
