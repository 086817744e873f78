"""``upgrade cluster``: propose the next Kubernetes version from the channel, check version skew, and write
it (and the channel's image for it, where a group runs a channel image) to the spec under the cluster lock.

The proposal is :meth:`pykops.api.channel.Channel.next_upgrade` (patch first, then the next minor; never a
skipped minor, never a downgrade); an explicit ``--kubernetes-version`` must keep to the same rules.
Skew (Kubernetes' version-skew policy): a kubelet is never newer than the API server and at most three
minors older; the API servers of an HA control plane differ by at most one minor. An upgrade that would
break either rule, given the versions the running cluster reports, is refused before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pykops.api.channel import Channel, format_version, load_channel, parse_version
from pykops.errors import SpecError

KUBELET_MAX_MINORS_BEHIND = 3


@dataclass
class Change:
    what: str  # "Cluster" or "InstanceGroup/<name>"
    field: str
    old: str
    new: str


@dataclass
class Proposal:
    current: str
    target: str | None
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # skew violations: nothing may be written

    @property
    def up_to_date(self) -> bool:
        return self.target is None


def _minor(version: str) -> tuple[int, int]:
    v = parse_version(version)
    return v[0], v[1]


def propose_version(current: str, channel: Channel, requested: str | None = None) -> str | None:
    """The version to move to: ``requested`` (checked) or the channel's next step; None when up to date."""
    cur = parse_version(current)
    if requested is None:
        return channel.next_upgrade(current)
    want = parse_version(requested)
    if want < cur:
        raise SpecError(f"cannot downgrade Kubernetes from {format_version(cur)} to {format_version(want)}")
    if want == cur:
        return None
    if want[0] != cur[0] or want[1] > cur[1] + 1:
        raise SpecError(
            f"cannot upgrade Kubernetes from {format_version(cur)} to {format_version(want)}: that skips a "
            f"minor version; upgrade to {cur[0]}.{cur[1] + 1} first",
        )
    channel.check_supported(want)
    return format_version(want)


def skew_problems(target: str, apiservers: list[str], kubelets: dict[str, str]) -> list[str]:
    """Why moving the control plane to ``target`` would break the version-skew policy (empty: it would not).

    ``apiservers``: versions the API servers report; ``kubelets``: node name → kubelet version.
    """
    problems: list[str] = []
    t = _minor(target)
    for version in apiservers:
        a = _minor(version.lstrip("v"))
        if t[1] - a[1] > 1:
            problems.append(
                f"an API server runs {version}: the control plane may span one minor version only, so it "
                f"must reach {t[0]}.{t[1] - 1} before {target}"
            )
    for node, version in sorted(kubelets.items()):
        try:
            k = _minor(version.lstrip("v"))
        except SpecError:
            continue
        if t[1] - k[1] > KUBELET_MAX_MINORS_BEHIND:
            problems.append(
                f"node {node} runs kubelet {version}, more than {KUBELET_MAX_MINORS_BEHIND} minors behind "
                f"{target}: roll it (pykops rolling-update cluster --yes) before upgrading"
            )
    return problems


def propose(
    cluster: object,
    groups: list[object],
    *,
    channel: Channel | None = None,
    requested: str | None = None,
    apiservers: list[str] | None = None,
    kubelets: dict[str, str] | None = None,
) -> Proposal:
    """What ``upgrade cluster`` would change in the spec (``cluster``/``groups``: completed api models)."""
    from pykops.api.models import Cluster, InstanceGroup
    from pykops.nodeup.config import architecture_of

    assert isinstance(cluster, Cluster)
    chan = channel or load_channel(cluster.spec.channel or "stable")
    current = cluster.spec.kubernetes_version or chan.default_kubernetes_version
    current = current.lstrip("v")
    target = propose_version(current, chan, requested)
    proposal = Proposal(current, target)
    if target is None:
        return proposal
    proposal.changes.append(Change("Cluster", "KubernetesVersion", current, target))
    for g in groups:
        assert isinstance(g, InstanceGroup)
        image = g.spec.image or ""
        if chan.is_channel_image(image):
            new_image = chan.default_image(target, architecture_of(g))
            if new_image != image:
                proposal.changes.append(Change(f"InstanceGroup/{g.name}", "Image", image, new_image))
    proposal.problems = skew_problems(target, apiservers or [], kubelets or {})
    return proposal


def apply_proposal(registry: object, name: str, proposal: Proposal) -> None:
    """Write the proposal's changes to the stored spec (conditional writes; the caller holds the lock)."""
    from pykops.state.registry import ClusterRegistry

    assert isinstance(registry, ClusterRegistry)
    if proposal.problems:
        raise SpecError("the upgrade breaks the version-skew policy: " + "; ".join(proposal.problems))
    stored = registry.get_cluster(name)
    for change in proposal.changes:
        if change.what == "Cluster" and change.field == "KubernetesVersion":
            cluster = stored.obj.model_copy(deep=True)
            cluster.spec.kubernetes_version = change.new
            registry.update_cluster(cluster, stored.version)
    for change in proposal.changes:
        if change.what.startswith("InstanceGroup/") and change.field == "Image":
            group_name = change.what.split("/", 1)[1]
            sg = registry.get_group(name, group_name)
            group = sg.obj.model_copy(deep=True)
            group.spec.image = change.new
            registry.update_group(name, group, sg.version)
