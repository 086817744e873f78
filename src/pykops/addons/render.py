"""Rendering add-on manifests from the completed cluster spec (pure).

Templating is plain data substitution, on purpose no template language: each template is a static YAML file
(easy to compare with the upstream manifest it follows), parsed first, then every string in the parsed tree
has its ``${name}`` placeholders replaced by values that Python computed from the spec (see
:mod:`pykops.addons.registry`). A string that is exactly one placeholder takes the value with its type (an
int stays an int); a list item that is exactly one placeholder whose value is a list is spliced in (how an
optional flag is present or absent without any logic in the template). Substituting after parsing means a
value can never change the YAML's structure. A placeholder without a value is an error.

Every object gets the labels ``addon.kops.k8s.io/name``, ``addon.kops.k8s.io/version`` and
``app.kubernetes.io/managed-by: pykops`` (the applier prunes by them), and every pod template must carry the
priority class ``system-cluster-critical`` or ``system-node-critical`` (checked here, so a template that
forgets it fails in tests, not in a cluster).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from pykops.addons.registry import ADDONS, Addon, AddonVersion, common_values
from pykops.api.models import Cluster
from pykops.errors import PykopsError

LABEL_NAME = "addon.kops.k8s.io/name"
LABEL_VERSION = "addon.kops.k8s.io/version"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "pykops"
PRIORITY_CLASSES = ("system-cluster-critical", "system-node-critical")
POD_TEMPLATE_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job")

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


class AddonError(PykopsError):
    """An add-on cannot be rendered or applied."""


@dataclass(frozen=True)
class RenderedAddon:
    name: str
    version: str
    kubernetes_version: str
    objects: tuple[dict[str, Any], ...]

    @property
    def manifest(self) -> bytes:
        return yaml.safe_dump_all(list(self.objects), sort_keys=False, default_flow_style=False).encode()

    @property
    def manifest_hash(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()

    @property
    def manifest_path(self) -> str:
        """Relative to the channel file's directory (``addons/``), as in kops."""
        return f"{self.name}/{self.version}.yaml"


@cache
def _template_text(path: str) -> str:
    return resources.files("pykops.addons").joinpath("data", path).read_text()


def load_template(path: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(_template_text(path)) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise AddonError(f"add-on template {path}: every document must be a Kubernetes object")
    return docs


def substitute(node: Any, values: dict[str, Any], where: str) -> Any:
    """Replace ``${name}`` placeholders in every string of a parsed YAML tree (see the module docstring)."""
    if isinstance(node, dict):
        return {k: substitute(v, values, where) for k, v in node.items()}
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            whole = _PLACEHOLDER.fullmatch(item) if isinstance(item, str) else None
            if whole and isinstance(_value(values, whole[1], where), list):
                out.extend(values[whole[1]])
            else:
                out.append(substitute(item, values, where))
        return out
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole:
            return _value(values, whole[1], where)
        return _PLACEHOLDER.sub(lambda m: str(_value(values, m[1], where)), node)
    return node


def _value(values: dict[str, Any], name: str, where: str) -> Any:
    if name not in values:
        raise AddonError(f"add-on template {where}: no value for ${{{name}}}")
    return values[name]


def _label(obj: dict[str, Any], name: str, version: str) -> None:
    metadata = obj.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    metadata["labels"] = {**labels, LABEL_NAME: name, LABEL_VERSION: version, LABEL_MANAGED_BY: MANAGED_BY}


def _check_priority(obj: dict[str, Any], where: str) -> None:
    if obj.get("kind") not in POD_TEMPLATE_KINDS:
        return
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    if pod.get("priorityClassName") not in PRIORITY_CLASSES:
        raise AddonError(
            f"add-on {where}: {obj['kind']} {obj['metadata'].get('name')} must set priorityClassName to "
            f"{' or '.join(PRIORITY_CLASSES)}"
        )


def addon_values(addon: Addon, version: AddonVersion, cluster: Cluster) -> dict[str, Any]:
    values: dict[str, Any] = {**common_values(cluster), **version.images, **addon.values(cluster)}
    values.update({k: v for k, v in addon.image_overrides(cluster.spec).items() if v})
    return values


def render_addon(addon: Addon, cluster: Cluster) -> RenderedAddon | None:
    """The add-on's objects for this cluster, or None when the cluster does not need it."""
    if not addon.needed(cluster.spec):
        return None
    k8s = cluster.spec.kubernetes_version
    if not k8s:
        raise AddonError(f"cluster {cluster.name} has no kubernetesVersion; cannot choose add-on versions")
    version = addon.version_for(k8s)
    if version is None:
        raise AddonError(f"add-on {addon.name} has no version for Kubernetes {k8s}")
    values = addon_values(addon, version, cluster)
    objects: list[dict[str, Any]] = []
    for path in version.templates:
        for doc in load_template(path):
            obj = substitute(doc, values, path)
            _label(obj, addon.name, version.version)
            _check_priority(obj, addon.name)
            objects.append(obj)
    return RenderedAddon(addon.name, version.version, version.kubernetes_version, tuple(objects))


def render_addons(cluster: Cluster) -> list[RenderedAddon]:
    """Every add-on the completed cluster needs, in the registry's order (the order they are applied in)."""
    return [r for a in ADDONS if (r := render_addon(a, cluster)) is not None]
