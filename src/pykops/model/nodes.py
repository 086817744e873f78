"""Instance groups builder: SSH key, launch templates, Auto Scaling groups, API LB, etcd volumes."""

from __future__ import annotations

from pykops.api.models import InstanceGroup
from pykops.engine.types import Ref, Resource
from pykops.model.context import ModelContext
from pykops.model.firewall import group_names
from pykops.model.iam import role_names
from pykops.model.names import elb_name, ssh_key_name
from pykops.model.network import subnet_ref

API_PORT = 443


def ig_role(group: InstanceGroup) -> str:
    if group.is_control_plane:
        return "control-plane"
    return "bastion" if group.spec.role == "Bastion" else "node"


def resource_name(ctx: ModelContext, group: InstanceGroup) -> str:
    """kops names launch templates and Auto Scaling groups ``<instance group>.<cluster>``."""
    return f"{group.name}.{ctx.name}"


def role_tags(group: InstanceGroup) -> dict[str, str]:
    if group.is_control_plane:
        return {"k8s.io/role/control-plane": "1", "k8s.io/role/master": "1"}
    if group.spec.role == "Bastion":
        return {"k8s.io/role/bastion": "1"}
    return {"k8s.io/role/node": "1"}


def group_tags(ctx: ModelContext, group: InstanceGroup) -> dict[str, str]:
    """Tags of an instance group's Auto Scaling group (propagated to its instances)."""
    name = resource_name(ctx, group)
    extra: dict[str, str] = {"kops.k8s.io/instancegroup": group.name, **role_tags(group)}
    extra.update(group.spec.cloud_labels or {})
    if group.spec.role == "Node":
        # cluster-autoscaler's auto-discovery (unless the group opts out with autoscale: false, as in kops)
        # and node-template hints.
        if group.spec.autoscale is not False:
            extra["k8s.io/cluster-autoscaler/enabled"] = "1"
            extra[f"k8s.io/cluster-autoscaler/{ctx.name}"] = "1"
        for key, value in sorted((group.spec.node_labels or {}).items()):
            extra[f"k8s.io/cluster-autoscaler/node-template/label/{key}"] = value
        for taint in group.spec.taints or []:
            key, _, rest = taint.partition("=")
            extra[f"k8s.io/cluster-autoscaler/node-template/taint/{key.split(':')[0]}"] = rest or taint
    return ctx.tags(name, extra)


def ssh_key_resource(ctx: ModelContext) -> Resource | None:
    if ctx.cluster.spec.ssh_key_name or ctx.ssh_public_key is None or ctx.ssh_fingerprint is None:
        return None
    name = ssh_key_name(ctx.name, ctx.ssh_fingerprint)
    return Resource("SSHKey", name, {"public_key": ctx.ssh_public_key.strip(), "tags": ctx.tags(name)})


def build_nodes(ctx: ModelContext) -> list[Resource]:
    out: list[Resource] = []
    key = ssh_key_resource(ctx)
    if key is not None:
        out.append(key)
    key_name: object = ctx.cluster.spec.ssh_key_name or (Ref("SSHKey", key.name, "name") if key else None)
    sgs = group_names(ctx)
    roles = role_names(ctx)
    public_topology = not any(s.type == "Private" for s in ctx.cluster.spec.subnets or [])
    target_group = Ref("TargetGroup", f"tcp.{ctx.name}", "arn")
    for group in ctx.groups:
        role = ig_role(group)
        name = resource_name(ctx, group)
        spec = group.spec
        image = ctx.images.get(spec.image or "")
        if image is None:
            raise ValueError(f"image {spec.image!r} of instance group {group.name} was not resolved")
        root: dict[str, object] = {
            "device_name": image.root_device_name,
            "size": spec.root_volume_size,
            "type": spec.root_volume_type,
            "encrypted": bool(spec.root_volume_encryption),
        }
        if spec.root_volume_iops is not None:
            root["iops"] = spec.root_volume_iops
        if spec.root_volume_throughput is not None:
            root["throughput"] = spec.root_volume_throughput
        metadata = spec.instance_metadata
        security_groups = [Ref("SecurityGroup", sgs[role])]
        security_groups.extend(Ref("SecurityGroup", sg) for sg in spec.additional_security_groups or [])
        associate = (
            spec.associate_public_ip
            if spec.associate_public_ip is not None
            else (public_topology or role == "bastion")
        )
        instance_tags = group_tags(ctx, group)
        out.append(
            Resource(
                "LaunchTemplate",
                name,
                {
                    "image_id": image.id,
                    "instance_type": spec.machine_type,
                    "key_name": key_name,
                    "security_groups": security_groups,
                    "iam_instance_profile": Ref("IAMInstanceProfile", roles[role], "arn"),
                    "user_data": ctx.user_data.get(group.name, ""),
                    "root_volume": root,
                    "metadata_options": {
                        "http_tokens": metadata.http_tokens if metadata else "required",
                        "http_put_response_hop_limit": metadata.http_put_response_hop_limit
                        if metadata
                        else 1,
                        "http_endpoint": "enabled",
                    },
                    "associate_public_ip": associate,
                    "instance_tags": instance_tags,
                    "tags": ctx.tags(name),
                },
                # The instance profile must carry its role before instances can launch with it.
                depends_on=(Ref("IAMInstanceProfileRole", roles[role]),),
            )
        )
        out.append(
            Resource(
                "AutoScalingGroup",
                name,
                {
                    "launch_template": Ref("LaunchTemplate", name),
                    "launch_template_version": Ref("LaunchTemplate", name, "version"),
                    "min_size": spec.min_size,
                    "max_size": spec.max_size,
                    "subnets": [subnet_ref(ctx, s) for s in spec.subnets or []],
                    "target_group_arns": [target_group] if group.is_control_plane else [],
                    "tags": instance_tags,
                },
            )
        )
    return out


def build_api_load_balancer(ctx: ModelContext) -> list[Resource]:
    spec = ctx.cluster.spec
    lb = spec.api.load_balancer if spec.api else None
    if lb is None:
        return []
    internal = lb.type == "Internal"
    # Per zone, the preferred subnet type first: utility subnets route to the internet in private topology.
    preference = ("Private", "Public") if internal else ("Utility", "Public")
    by_zone: dict[str, str] = {}
    for subnet_type in preference:
        for subnet in spec.subnets or []:
            if subnet.type == subnet_type and subnet.zone and subnet.zone not in by_zone:
                by_zone[subnet.zone] = subnet.name
    api_name, tg_name = f"api.{ctx.name}", f"tcp.{ctx.name}"
    return [
        Resource(
            "NetworkLoadBalancer",
            api_name,
            {
                "load_balancer_name": elb_name("api", ctx.name),
                "scheme": "internal" if internal else "internet-facing",
                "subnets": [subnet_ref(ctx, by_zone[z]) for z in sorted(by_zone)],
                "security_groups": [Ref("SecurityGroup", group_names(ctx)["api-elb"])],
                "tags": ctx.tags(api_name),
            },
        ),
        Resource(
            "TargetGroup",
            tg_name,
            {
                "target_group_name": elb_name("tcp", ctx.name),
                "vpc": Ref("VPC", ctx.name),
                "port": API_PORT,
                "protocol": "TCP",
                "health_check": {"protocol": "TCP", "port": str(API_PORT)},
                "tags": ctx.tags(tg_name),
            },
        ),
        Resource(
            "Listener",
            f"{api_name}/{API_PORT}",
            {
                "load_balancer": Ref("NetworkLoadBalancer", api_name, "arn"),
                "port": API_PORT,
                "protocol": "TCP",
                "target_group": Ref("TargetGroup", tg_name, "arn"),
            },
        ),
    ]


def build_dns(ctx: ModelContext) -> list[Resource]:
    """``api.<cluster>`` and ``api.internal.<cluster>`` alias records when the cluster uses DNS."""
    spec = ctx.cluster.spec
    if ctx.hosted_zone_id is None or spec.api is None or spec.api.load_balancer is None:
        return []
    lb = f"api.{ctx.name}"
    return [
        Resource(
            "DNSRecord",
            f"{prefix}.{ctx.name}",
            {
                "hosted_zone_id": ctx.hosted_zone_id,
                "record_name": f"{prefix}.{ctx.name}.",
                "type": "A",
                "alias_target": {
                    "dns_name": Ref("NetworkLoadBalancer", lb, "dns_name"),
                    "hosted_zone_id": Ref("NetworkLoadBalancer", lb, "hosted_zone_id"),
                },
            },
        )
        for prefix in ("api", "api.internal")
    ]


def build_etcd_volumes(ctx: ModelContext) -> list[Resource]:
    """One encrypted volume per member per etcd cluster, in the zone of the member's control-plane group."""
    groups = {g.name: g for g in ctx.groups}
    zones = {s.name: s.zone for s in ctx.cluster.spec.subnets or []}
    out: list[Resource] = []
    for etcd in ctx.cluster.spec.etcd_clusters or []:
        members = etcd.etcd_members or []
        all_members = ",".join(m.name for m in members)
        for member in members:
            group = groups[member.instance_group or ""]
            zone = zones[(group.spec.subnets or [""])[0]]
            name = f"{member.name}.etcd-{etcd.name}.{ctx.name}"
            props: dict[str, object] = {
                "availability_zone": zone,
                "size": member.volume_size,
                "volume_type": member.volume_type,
                "encrypted": member.encrypted_volume is not False,
                "tags": ctx.tags(
                    name,
                    {
                        f"k8s.io/etcd/{etcd.name}": f"{member.name}/{all_members}",
                        "k8s.io/role/control-plane": "1",
                        "k8s.io/role/master": "1",
                    },
                ),
            }
            if member.volume_iops is not None:
                props["iops"] = member.volume_iops
            if member.volume_throughput is not None:
                props["throughput"] = member.volume_throughput
            out.append(Resource("EBSVolume", name, props))
    return out
