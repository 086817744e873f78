"""The engine's vocabulary: desired resources, references, actual resources, changes and the kind contract.

A *desired* :class:`Resource` is plain data built by the (pure) model builders: a kind, a logical name
unique within that kind, and properties that may contain :class:`Ref` values pointing at other
resources' attributes (``Ref("VPC", "proyecto.k8s.local")`` is that VPC's id once it exists). The
dependency graph is derived from those references, never declared twice.

An *actual* resource (:class:`Actual`) is what a :class:`Kind` found in the cloud, with its properties
in the same shape as the desired ones (references resolved to ids) so the diff is a plain comparison.

A :class:`Kind` is implemented once per resource type by a cloud provider (``cloud/aws``): it finds every
resource of its type that belongs to the cluster in a constant number of calls, and creates, updates and
deletes one resource. Planning code never calls a Kind's mutating methods; apply code never decides what
the cluster should be.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

Action = Literal["create", "update", "replace", "delete"]


@dataclass(frozen=True, order=True)
class Ref:
    """A reference to an attribute (default ``id``) of another desired resource."""

    kind: str
    name: str
    attr: str = "id"

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}" + ("" if self.attr == "id" else f".{self.attr}")


def iter_refs(value: Any) -> Iterator[Ref]:
    """Every Ref inside a JSON-like value (dicts, lists, tuples)."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_refs(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_refs(item)


@dataclass
class Resource:
    """A desired resource.

    ``props`` are the properties the cloud must match (JSON-like; may contain Refs). ``shared`` marks a
    resource that exists outside the cluster (a shared VPC or subnet given by id): it is found and
    referenced, tagged ``shared`` at most, and never modified destructively nor deleted.
    ``depends_on`` adds ordering edges that no property expresses (e.g. a route needs the gateway attached).
    """

    kind: str
    name: str
    props: dict[str, Any] = field(default_factory=dict)
    shared: bool = False
    depends_on: tuple[Ref, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def refs(self) -> list[Ref]:
        return sorted({*iter_refs(self.props), *self.depends_on})

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Actual:
    """A resource found in the cloud.

    ``props`` has the same keys and shapes as the desired props (Refs replaced by the ids they resolve to).
    ``attrs`` are the outputs other resources can reference (``id`` always; ``arn``, ``dns_name``...).
    """

    kind: str
    name: str
    attrs: dict[str, Any]
    props: dict[str, Any] = field(default_factory=dict)
    # Tagged ``kubernetes.io/cluster/<name>=shared``: used by the cluster but not its own, never deleted.
    shared: bool = False

    @property
    def id(self) -> str:
        return str(self.attrs["id"])

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass
class Change:
    """One step of a plan. ``desired`` is None for deletes; ``actual`` is None for creates."""

    action: Action
    kind: str
    name: str
    desired: Resource | None = None
    actual: Actual | None = None
    fields: list[FieldChange] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


class Cloud(Protocol):
    """What a Kind needs from the provider: the cluster identity and the call plumbing (opaque here)."""

    cluster_name: str


class Kind(Protocol):
    """The contract each resource type implements in a cloud provider package.

    ``immutable`` lists props that cannot change in place: a change to one is planned as a replacement
    when ``replaceable`` is true, and refused with a clear error otherwise.
    ``find`` must cost a number of API calls that does not grow with the number of resources.
    """

    kind: ClassVar[str]
    immutable: ClassVar[frozenset[str]]
    replaceable: ClassVar[bool]

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        """Every resource of this kind that belongs to the cluster (and the shared ones in ``desired``)."""
        ...

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        """Create it from ``props`` (Refs resolved); return its attrs (at least ``id``)."""
        ...

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        """Change the mutable ``changes`` in place; return its (possibly new) attrs."""
        ...

    def delete(self, cloud: Any, actual: Actual) -> None:
        """Delete it; a resource already gone is not an error."""
        ...


class RetryableError(Exception):
    """A failure worth retrying (throttling, dependency still being released, eventual consistency)."""

    def __init__(self, message: str, *, code: str = "", max_attempts: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        # Fewer tries for errors that are usually transient but may be real mistakes.
        self.max_attempts = max_attempts


class ApplyError(Exception):
    """Apply stopped; ``done`` were completed, ``failed`` holds the change and error of each failure."""

    def __init__(
        self, message: str, *, done: list[Change], failed: list[tuple[Change, BaseException]]
    ) -> None:
        super().__init__(message)
        self.done = done
        self.failed = failed
