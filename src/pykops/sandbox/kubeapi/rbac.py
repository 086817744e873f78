"""RBAC authorization from the stored Roles, ClusterRoles and their bindings (read on each request).

``system:masters`` may do everything (as in Kubernetes, without consulting RBAC). Users
``system:node:<name>`` of group ``system:nodes`` get what ClusterRole ``system:node`` allows (a simplified
Node authorizer: not limited to the node's own objects). Role aggregation (``aggregationRule``) is not
evaluated: the bootstrap roles list their rules in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pykops.sandbox.kubeapi import registry as reg
from pykops.sandbox.kubeapi.errors import ApiError

if TYPE_CHECKING:
    from pykops.sandbox.kubeapi.api import KubeApi

_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class Attributes:
    user: str
    groups: Sequence[str]
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests

    @property
    def is_resource(self) -> bool:
        return not self.path


def _subject_matches(subject: dict[str, Any], attrs: Attributes, binding_ns: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return name == attrs.user
    if kind == "Group":
        return name in attrs.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return attrs.user == f"system:serviceaccount:{ns}:{name}"
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.is_resource:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    if not (
        "*" in resources
        or wanted in resources
        or (attrs.subresource and f"*/{attrs.subresource}" in resources)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


class Authorizer:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def _objects(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        res = reg.lookup(_GROUP, "v1", plural)
        assert res is not None
        kvs, _ = self.api.store.scan(self.api.list_prefix(res, namespace))
        return [kv.obj for kv in kvs]

    def _role_rules(self, ref: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            res = reg.lookup(_GROUP, "v1", "clusterroles")
            assert res is not None
            kv = self.api.store.get(self.api.key(res, None, str(ref.get("name"))))
        else:
            res = reg.lookup(_GROUP, "v1", "roles")
            assert res is not None
            kv = self.api.store.get(self.api.key(res, namespace, str(ref.get("name"))))
        return list((kv.obj.get("rules") or []) if kv else [])

    def allowed(self, attrs: Attributes) -> bool:
        if "system:masters" in attrs.groups:
            return True
        # the Node authorizer, simplified: a node may do what ClusterRole system:node allows, on any object
        # (Kubernetes limits it to the objects of the pods bound to it)
        node_role = {"kind": "ClusterRole", "name": "system:node"}
        if (
            attrs.user.startswith("system:node:")
            and "system:nodes" in attrs.groups
            and any(rule_allows(r, attrs) for r in self._role_rules(node_role, None))
        ):
            return True
        for binding in self._objects("clusterrolebindings", None):
            if any(_subject_matches(s, attrs, "") for s in binding.get("subjects") or []):
                rules = self._role_rules(binding.get("roleRef") or {}, None)
                if any(rule_allows(r, attrs) for r in rules):
                    return True
        if attrs.is_resource and attrs.namespace:
            for binding in self._objects("rolebindings", attrs.namespace):
                if any(_subject_matches(s, attrs, attrs.namespace) for s in binding.get("subjects") or []):
                    rules = self._role_rules(binding.get("roleRef") or {}, attrs.namespace)
                    if any(rule_allows(r, attrs) for r in rules):
                        return True
        return False

    def check(self, attrs: Attributes) -> None:
        if self.allowed(attrs):
            return
        raise forbidden(attrs)


def forbidden(attrs: Attributes) -> ApiError:
    if not attrs.is_resource:
        return ApiError(
            403, "Forbidden", f'forbidden: User "{attrs.user}" cannot {attrs.verb} path "{attrs.path}"'
        )
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{attrs.user}" cannot {attrs.verb} resource "{wanted}" '
        f'in API group "{attrs.group}" {scope}'
    )
    details: dict[str, Any] = {"kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.group:
        details["group"] = attrs.group
    return ApiError(403, "Forbidden", message, details)
