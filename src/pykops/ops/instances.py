"""The cluster's instances in AWS: cloud groups (ASGs with their instances), ``get instances`` rows, and the
few mutating calls day-2 operations make (terminate in the ASG, set desired capacity).

Which launch-template version an instance runs is read from the EC2 tag ``aws:ec2launchtemplate:version``
that EC2 sets at launch (it never changes), falling back to the ASG's per-instance answer; an instance
needs an update when that differs from the group's version (``$Default``/``$Latest`` resolved).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pykops.cloud.aws.cloud import AwsCloud, cluster_owned_tag
from pykops.cloud.aws.compute import paginate
from pykops.errors import NotFoundError, PykopsError
from pykops.ops.validate import CloudGroup, CloudInstance, GroupSpec, NodeInfo

LT_VERSION_TAG = "aws:ec2launchtemplate:version"
INSTANCE_HEADERS = [
    "ID",
    "NODE-NAME",
    "STATUS",
    "ROLES",
    "STATE",
    "INTERNAL-IP",
    "EXTERNAL-IP",
    "INSTANCE-GROUP",
    "MACHINE-TYPE",
]


def asg_name(group: str, cluster: str) -> str:
    return f"{group}.{cluster}"


def group_of_asg(name: str, cluster: str) -> str:
    return name.removesuffix(f".{cluster}")


def _lt_versions(cloud: AwsCloud, template_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """template id → (default version, latest version)."""
    ids = sorted(set(template_ids))
    if not ids:
        return {}
    found = paginate(cloud.ec2, "describe_launch_templates", "LaunchTemplates", LaunchTemplateIds=ids)
    return {
        str(t["LaunchTemplateId"]): (str(t.get("DefaultVersionNumber")), str(t.get("LatestVersionNumber")))
        for t in found
    }


def _resolve(version: str | None, template: str | None, versions: dict[str, tuple[str, str]]) -> str | None:
    if version in (None, "", "$Default", "$Latest") and template in versions:
        default, latest = versions[str(template)]
        return latest if version == "$Latest" else default
    return version


def cloud_groups(cloud: AwsCloud, cluster: str) -> list[CloudGroup]:
    """Every ASG of the cluster with its instances (constant number of AWS calls for the whole cluster)."""
    groups = paginate(
        cloud.autoscaling,
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        Filters=[{"Name": "tag-key", "Values": [cluster_owned_tag(cluster)]}],
    )
    template_ids = [str((g.get("LaunchTemplate") or {}).get("LaunchTemplateId")) for g in groups]
    versions = _lt_versions(cloud, [t for t in template_ids if t and t != "None"])
    instance_ids = [str(i["InstanceId"]) for g in groups for i in g.get("Instances") or []]
    ec2: dict[str, dict[str, Any]] = {}
    if instance_ids:
        for reservation in paginate(
            cloud.ec2, "describe_instances", "Reservations", InstanceIds=sorted(instance_ids)
        ):
            for inst in reservation.get("Instances") or []:
                ec2[str(inst["InstanceId"])] = inst
    result: list[CloudGroup] = []
    for g in groups:
        template = g.get("LaunchTemplate") or {}
        tid = template.get("LaunchTemplateId")
        group_version = _resolve(template.get("Version"), tid, versions)
        name = group_of_asg(str(g["AutoScalingGroupName"]), cluster)
        cg = CloudGroup(
            name=name,
            asg_name=str(g["AutoScalingGroupName"]),
            min_size=int(g.get("MinSize", 0)),
            max_size=int(g.get("MaxSize", 0)),
            desired=int(g.get("DesiredCapacity", 0)),
            lt_version=group_version,
        )
        for i in g.get("Instances") or []:
            iid = str(i["InstanceId"])
            described = ec2.get(iid, {})
            tags = {str(t["Key"]): str(t.get("Value", "")) for t in described.get("Tags") or []}
            version = tags.get(LT_VERSION_TAG) or _resolve(
                (i.get("LaunchTemplate") or {}).get("Version"), tid, versions
            )
            cg.instances.append(
                CloudInstance(
                    id=iid,
                    group=name,
                    lifecycle=str(i.get("LifecycleState", "")),
                    state=str((described.get("State") or {}).get("Name", "running" if not described else "")),
                    lt_version=version,
                    needs_update=bool(group_version and version and version != group_version),
                    zone=str(i.get("AvailabilityZone", "")),
                    machine_type=str(i.get("InstanceType") or described.get("InstanceType") or ""),
                    private_ip=str(described.get("PrivateIpAddress") or ""),
                    public_ip=str(described.get("PublicIpAddress") or ""),
                )
            )
        result.append(cg)
    return sorted(result, key=lambda c: c.name)


def mark_version_skew(
    cloud: list[CloudGroup], nodes: list[NodeInfo], kubernetes_version: str | Mapping[str, str] | None
) -> int:
    """Mark instances whose node runs another kubelet version than the one ``update cluster`` last applied
    (one version, or one per instance group) as needing an update (their launch template may be unchanged:
    the version lives in the NodeupConfig); returns how many were marked."""
    if not kubernetes_version:
        return 0
    kubelets = {
        n.instance_id: n.kubelet_version.lstrip("v") for n in nodes if n.instance_id and n.kubelet_version
    }
    versions = kubernetes_version

    def applied(group: str) -> str | None:
        return versions if isinstance(versions, str) else versions.get(group)

    marked = 0
    for cg in cloud:
        version = applied(cg.name)
        if not version:
            continue
        want = version.lstrip("v")
        for inst in cg.instances:
            if not inst.needs_update and kubelets.get(inst.id, want) != want:
                inst.needs_update = True
                marked += 1
    return marked


def instance_rows(
    groups: list[GroupSpec], cloud: list[CloudGroup], nodes: list[NodeInfo] | None
) -> list[list[object]]:
    """``get instances`` rows in kops' columns; ``nodes`` None when the API could not be reached."""
    by_instance = {n.instance_id: n for n in nodes or [] if n.instance_id}
    roles = {g.name: ("control-plane" if g.is_control_plane else g.role.lower()) for g in groups}
    rows: list[list[object]] = []
    for cg in cloud:
        for inst in sorted(cg.instances, key=lambda i: i.id):
            node = by_instance.get(inst.id)
            rows.append(
                [
                    inst.id,
                    node.name if node else "",
                    "NeedsUpdate" if inst.needs_update else "UpToDate",
                    roles.get(cg.name, "node"),
                    inst.lifecycle if inst.lifecycle != "InService" else "",
                    inst.private_ip,
                    inst.public_ip,
                    cg.name,
                    inst.machine_type,
                ]
            )
    return rows


def find_instance(
    cloud: list[CloudGroup], nodes: list[NodeInfo], ref: str
) -> tuple[CloudGroup, CloudInstance]:
    """An instance by id or by the name of its Node."""
    node = next((n for n in nodes if n.name == ref), None)
    wanted = node.instance_id if node and node.instance_id else ref
    for cg in cloud:
        for inst in cg.instances:
            if inst.id == wanted:
                return cg, inst
    raise NotFoundError(f"no instance or node {ref!r} in the cluster's instance groups")


class AwsGroups:
    """The cloud side of a rolling update / instance deletion, on AWS Auto Scaling."""

    def __init__(self, cloud: AwsCloud, cluster: str) -> None:
        self.cloud = cloud
        self.cluster = cluster

    def groups(self) -> list[CloudGroup]:
        return cloud_groups(self.cloud, self.cluster)

    def terminate(self, instance_id: str, *, decrement: bool) -> None:
        """``TerminateInstanceInAutoScalingGroup``: without decrement the group launches a replacement."""
        self.cloud.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement
        )

    def set_desired(self, group: CloudGroup, desired: int) -> None:
        kwargs: dict[str, Any] = {"AutoScalingGroupName": group.asg_name, "DesiredCapacity": desired}
        if desired > group.max_size:
            kwargs["MaxSize"] = desired
        self.cloud.autoscaling.update_auto_scaling_group(**kwargs)

    def restore_max(self, group: CloudGroup, max_size: int) -> None:
        self.cloud.autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=group.asg_name, MaxSize=max_size
        )


class LiveCluster:
    """A cluster's spec, its AWS side and (when reachable) its Kubernetes API, for the day-2 commands."""

    def __init__(
        self, registry: Any, name: str, *, kubeconfig: str | None = None, need_api: bool = True
    ) -> None:
        from pykops.ops.update import load_completed, region_of
        from pykops.ops.validate import etcd_member_count, group_specs

        self.name = name
        self.registry = registry
        self.cluster, self.groups, self.warnings = load_completed(registry, name)
        self.specs = group_specs(self.groups)
        self.etcd_members = etcd_member_count(self.cluster)
        self.cloud = AwsCloud(name, region_of(self.cluster))
        self.aws = AwsGroups(self.cloud, name)
        self.kube: Any = None
        self.kube_error: str | None = None
        if need_api:
            from pykops.ops.kubeclient import KubeClient

            try:
                self.kube = KubeClient.for_cluster(name, kubeconfig)
            except PykopsError as exc:
                self.kube_error = str(exc)

    def cloud_groups(self) -> list[CloudGroup]:
        wanted = {g.name for g in self.specs}
        return [g for g in self.aws.groups() if g.name in wanted]

    def applied_kubernetes_versions(self) -> dict[str, str]:
        """Per instance group, the Kubernetes version its new machines bootstrap with: the one in the
        NodeupConfig the last ``update cluster --yes`` wrote for it (``update --instance-group`` writes only
        the chosen groups')."""
        from pykops.model.bootstrap import igconfig_key
        from pykops.nodeup.config import NodeupConfig

        versions: dict[str, str] = {}
        for group in self.groups:
            key = igconfig_key(self.name, group)
            found = self.registry.store.read(key)
            if found is None:
                continue
            try:
                versions[group.name] = NodeupConfig.from_yaml(found.data.decode(), key).kubernetes_version
            except PykopsError:
                continue  # unreadable: the launch template version alone decides for this group
        return versions

    def nodes_or_none(self) -> list[NodeInfo] | None:
        from pykops.ops.validate import ApiUnreachable

        if self.kube is None:
            return None
        try:
            return list(self.kube.nodes())
        except ApiUnreachable as exc:
            self.kube_error = str(exc)
            return None

    def check(self) -> Any:
        """One validation (raises ApiUnreachable when the API cannot be reached)."""
        from pykops.ops.validate import ApiUnreachable, validate

        if self.kube is None:
            raise ApiUnreachable(self.kube_error or "no Kubernetes API client")
        cloud = self.cloud_groups()
        return validate(
            self.specs, cloud, self.kube.nodes(), self.kube.pods(), etcd_members=self.etcd_members
        )

    def surge_spec(self) -> dict[str, tuple[int | str | None, int | str | None]]:
        """maxSurge / maxUnavailable per group: the group's rollingUpdate, else the cluster's."""
        base = self.cluster.spec.rolling_update
        result: dict[str, tuple[int | str | None, int | str | None]] = {}
        for g in self.groups:
            own = g.spec.rolling_update
            surge = own.max_surge if own and own.max_surge is not None else (base.max_surge if base else None)
            unavailable = (
                own.max_unavailable
                if own and own.max_unavailable is not None
                else (base.max_unavailable if base else None)
            )
            result[g.name] = (surge, unavailable)
        return result
