"""All builders together: the desired resources of a cluster (pure)."""

from __future__ import annotations

from pykops.engine.types import Resource
from pykops.model.context import ModelContext
from pykops.model.firewall import build_firewall
from pykops.model.iam import build_iam
from pykops.model.network import build_network
from pykops.model.nodes import build_api_load_balancer, build_dns, build_etcd_volumes, build_nodes


def build(ctx: ModelContext) -> list[Resource]:
    """The desired resources; keys (kind, name) are unique (checked)."""
    resources = [
        *build_network(ctx),
        *build_firewall(ctx),
        *build_iam(ctx),
        *build_api_load_balancer(ctx),
        *build_dns(ctx),
        *build_etcd_volumes(ctx),
        *build_nodes(ctx),
    ]
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        if resource.key in seen:
            raise ValueError(f"model error: {resource} is built twice")
        seen.add(resource.key)
    return resources
