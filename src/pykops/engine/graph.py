"""Dependency graphs: desired resources ordered by their Refs, actual resources by the ids they mention.

The desired graph has an edge ``A -> B`` when A references B (a :class:`Ref` in its props or
``depends_on``): B must exist before A is created. A Ref to a resource outside the desired set is allowed
only when that resource exists in the cloud (it is then *external*: referenced, never changed). Cycles are
refused with the cycle spelled out (``VPC/a -> Subnet/b -> VPC/a``: each one references the next).

Orders are stable: among resources whose dependencies are satisfied, the one first in :data:`KIND_ORDER`
(then by kind, then by name) comes first, so plans and logs read the same on every run.

Actual resources carry no Refs, only the ids they resolved to; :func:`actual_references` maps those ids
back to the actual resources that own them, which is what delete ordering needs (a resource is deleted
after everything that references it).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pykops.engine.types import Actual, Resource
from pykops.errors import PykopsError

Key = tuple[str, str]

# The order resources are created in when nothing else decides (docs/resources.md); deletes use the reverse.
KIND_ORDER: tuple[str, ...] = (
    "VPC",
    "DHCPOptions",
    "VPCDHCPOptionsAssociation",
    "InternetGateway",
    "Subnet",
    "RouteTable",
    "Route",
    "RouteTableAssociation",
    "ElasticIP",
    "NatGateway",
    "SecurityGroup",
    "SecurityGroupRule",
    "IAMRole",
    "IAMRolePolicy",
    "IAMInstanceProfile",
    "IAMInstanceProfileRole",
    "SSHKey",
    "LaunchTemplate",
    "AutoScalingGroup",
    "NetworkLoadBalancer",
    "TargetGroup",
    "Listener",
    "EBSVolume",
)
_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}

# Attributes of actual resources that other resources' props mention (resolved Refs), and props never
# scanned for references (tag values repeat resource names, which would invent edges).
REFERENCE_ATTRS: tuple[str, ...] = ("id", "arn")


class GraphError(PykopsError):
    """The desired resources cannot be ordered: a duplicate, a dangling reference or a cycle."""


def kind_rank(kind: str) -> int:
    """Position of ``kind`` in :data:`KIND_ORDER`; unknown kinds come after every known one."""
    return _RANK.get(kind, len(KIND_ORDER))


def sort_key(key: Key) -> tuple[int, str, str]:
    """The stable order of resources: kind order, then kind, then name."""
    return (kind_rank(key[0]), key[0], key[1])


def key_str(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class Graph:
    """The desired resources and their dependencies.

    ``deps[k]`` are the desired resources ``k`` references; ``external[k]`` the resources it references
    that are not desired but exist in the cloud. ``dependents[k]`` is the reverse of ``deps``.
    """

    resources: dict[Key, Resource]
    deps: dict[Key, tuple[Key, ...]]
    external: dict[Key, tuple[Key, ...]] = field(default_factory=dict)

    @property
    def dependents(self) -> dict[Key, tuple[Key, ...]]:
        out: dict[Key, list[Key]] = {k: [] for k in self.resources}
        for k, ds in self.deps.items():
            for d in ds:
                out[d].append(k)
        return {k: tuple(sorted(v, key=sort_key)) for k, v in out.items()}

    def order(self) -> list[Key]:
        """Every desired resource after the ones it references (stable)."""
        return topological_order(self.deps)

    def external_keys(self) -> set[Key]:
        """The actual-only resources some desired resource references."""
        return {k for ks in self.external.values() for k in ks}


def build_graph(desired: Iterable[Resource], actual: Iterable[Actual | Key] = ()) -> Graph:
    """The dependency graph of ``desired``; ``actual`` (resources or keys) may satisfy references.

    Raises :class:`GraphError` for a duplicate (kind, name), a Ref to a resource neither desired nor found
    in ``actual``, or a dependency cycle.
    """
    resources: dict[Key, Resource] = {}
    duplicates: list[str] = []
    for r in desired:
        if r.key in resources:
            duplicates.append(str(r))
        resources[r.key] = r
    if duplicates:
        raise GraphError(f"duplicate desired resources: {', '.join(sorted(set(duplicates)))}")
    actual_keys = {a if isinstance(a, tuple) else a.key for a in actual}

    deps: dict[Key, tuple[Key, ...]] = {}
    external: dict[Key, tuple[Key, ...]] = {}
    dangling: list[str] = []
    for key in sorted(resources, key=sort_key):
        inside: set[Key] = set()
        outside: set[Key] = set()
        for ref in resources[key].refs():
            if ref.key in resources:
                inside.add(ref.key)
            elif ref.key in actual_keys:
                outside.add(ref.key)
            else:
                dangling.append(f"{key_str(key)} references {key_str(ref.key)}")
        deps[key] = tuple(sorted(inside, key=sort_key))
        if outside:
            external[key] = tuple(sorted(outside, key=sort_key))
    if dangling:
        raise GraphError(
            "references to resources that are neither desired nor found in the cloud: " + "; ".join(dangling)
        )
    graph = Graph(resources, deps, external)
    graph.order()  # refuse cycles now
    return graph


def topological_order(deps: Mapping[Key, Collection[Key]]) -> list[Key]:
    """Every key after its ``deps`` (Kahn's algorithm, ready keys taken in :func:`sort_key` order).

    Dependencies that are not keys of ``deps`` are ignored. Raises :class:`GraphError` naming a cycle.
    """
    pending = {k: {d for d in ds if d in deps} for k, ds in deps.items()}
    dependents: dict[Key, list[Key]] = {k: [] for k in deps}
    for k, ds in pending.items():
        for d in ds:
            dependents[d].append(k)
    ready = [(sort_key(k), k) for k, ds in pending.items() if not ds]
    heapq.heapify(ready)
    out: list[Key] = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(k)
        for dependent in dependents[k]:
            pending[dependent].discard(k)
            if not pending[dependent]:
                heapq.heappush(ready, (sort_key(dependent), dependent))
    if len(out) < len(pending):
        left = {k: ds for k, ds in pending.items() if ds}
        raise GraphError(f"dependency cycle: {format_cycle(find_cycle(left))} (each references the next)")
    return out


def find_cycle(deps: Mapping[Key, Collection[Key]]) -> list[Key]:
    """A cycle among ``deps`` (every key of which still has a dependency inside), smallest key first.

    Returns ``[a, b, ..., a]``; empty when there is none.
    """
    inside = {k: sorted((d for d in ds if d in deps), key=sort_key) for k, ds in deps.items()}
    for start in sorted(inside, key=sort_key):
        path: list[Key] = []
        seen: dict[Key, int] = {}
        node: Key | None = start
        while node is not None and node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = inside[node][0] if inside[node] else None
        if node is None:
            continue
        cycle = path[seen[node] :]
        first = min(range(len(cycle)), key=lambda i: sort_key(cycle[i]))
        cycle = cycle[first:] + cycle[:first]
        return [*cycle, cycle[0]]
    return []


def format_cycle(cycle: list[Key]) -> str:
    return " -> ".join(key_str(k) for k in cycle)


def _strings(value: Any, *, top: bool = True) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if top and isinstance(k, str) and (k == "tags" or k.endswith("_tags")):
                continue
            yield from _strings(v, top=False)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v, top=False)


def actual_references(actual: Iterable[Actual]) -> dict[Key, frozenset[Key]]:
    """For each actual resource, the other actual resources its props mention by id or arn.

    Tags (``tags``, ``*_tags`` props) are not scanned: their values repeat names, not references. An id
    shared by several resources (IAM names) links to each of them, which only ever adds ordering.
    """
    resources = list(actual)
    owners: dict[str, set[Key]] = {}
    for a in resources:
        for attr in REFERENCE_ATTRS:
            value = a.attrs.get(attr)
            if isinstance(value, str) and value:
                owners.setdefault(value, set()).add(a.key)
    out: dict[Key, frozenset[Key]] = {}
    for a in resources:
        found: set[Key] = set()
        for s in _strings(a.props):
            found |= owners.get(s, set())
        found.discard(a.key)
        out[a.key] = frozenset(found)
    return out


def delete_order(keys: Iterable[Key], references: Mapping[Key, Collection[Key]]) -> list[Key]:
    """``keys`` ordered so that a resource comes after every resource (among ``keys``) referencing it.

    Ties go in reverse :data:`KIND_ORDER`. Never fails: a cycle (possible with guessed references) is
    broken by taking the first remaining key in that order.
    """
    todo = set(keys)
    referrers: dict[Key, set[Key]] = {k: set() for k in todo}
    for k in todo:
        for target in references.get(k, ()):
            if target in todo and target != k:
                referrers[target].add(k)

    def prio(k: Key) -> tuple[int, str, str]:
        return (-kind_rank(k[0]), k[0], k[1])

    out: list[Key] = []
    while todo:
        ready = [k for k in todo if not referrers[k] & todo]
        k = min(ready or todo, key=prio)
        out.append(k)
        todo.discard(k)
    return out
