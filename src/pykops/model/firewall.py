"""Firewall builder: security groups and their rules, as kops lays them out (pure).

Control plane, nodes and the API load balancer each get a group. Everything is allowed within and between
the control plane and nodes, except that nodes cannot reach the control plane's etcd ports (2380-2381 for
etcd-main/events peers, 4001-4002 for their clients): a compromised node must not read the cluster's
secrets out of etcd. SSH comes from ``sshAccess`` (or only from the bastion in private topology); the API
load balancer takes 443 from ``kubernetesApiAccess`` (and ICMP "fragmentation needed" for path-MTU
discovery) and forwards to the control plane on 443.
"""

from __future__ import annotations

import ipaddress

from pykops.engine.types import Ref, Resource
from pykops.model.context import ModelContext
from pykops.model.names import rule_name

# Node → control-plane TCP ranges: everything but the etcd peer (2380-2381) and client (4001-4002) ports.
NODE_TO_CONTROL_PLANE_TCP = ((1, 2379), (2382, 4000), (4003, 65535))
ALL = "-1"
IPIP = "4"

# What each network plugin's add-on needs between machines (both ways, between any two of the control plane
# and the nodes), as (protocol, port); protocol "4" is IP-in-IP, which has no port. All of it is inside the
# rules above (all traffic among nodes, control plane -> nodes, and TCP/UDP except etcd's ports from nodes
# to the control plane) except IP-in-IP from nodes to the control plane, hence the one extra rule below.
PLUGIN_TRAFFIC: dict[str, tuple[tuple[str, int], ...]] = {
    "kubenet": (),  # VPC routes (programmed by the cloud controller), no encapsulation
    "amazonvpc": (),  # pods have VPC addresses, no encapsulation
    "kindnet": (),  # routes to each node's pod CIDR, no encapsulation
    "calico": (("tcp", 179), (IPIP, 0)),  # BGP (bird) and IP-in-IP
    "kuberouter": (("tcp", 179), (IPIP, 0)),  # BGP and IP-in-IP across subnets
    "cilium": (("udp", 8472), ("tcp", 4240)),  # VXLAN and cilium-health
    "flannel": (("udp", 8472),),  # VXLAN
    "canal": (("udp", 8472),),  # flannel's VXLAN
    "cni": (),  # the user's own plugin: nothing known
}
IPIP_PLUGINS = tuple(p for p, traffic in PLUGIN_TRAFFIC.items() if any(proto == IPIP for proto, _ in traffic))


def _rule(
    ctx: ModelContext,
    group: str,
    direction: str,
    protocol: str,
    from_port: int,
    to_port: int,
    *,
    cidr: str | None = None,
    source_group: str | None = None,
) -> Resource:
    source = cidr if cidr is not None else str(source_group)
    props: dict[str, object] = {
        "group": Ref("SecurityGroup", group),
        "direction": direction,
        "protocol": protocol,
        "from_port": from_port,
        "to_port": to_port,
    }
    if cidr is not None:
        props["cidr"] = cidr
    else:
        props["source_group"] = Ref("SecurityGroup", str(source_group))
    return Resource(
        "SecurityGroupRule", rule_name(group, direction, protocol, from_port, to_port, source), props
    )


def _icmp_pmtu(ctx: ModelContext, group: str, cidr: str) -> Resource:
    # IPv4: type 3 (destination unreachable) code 4 (fragmentation needed); IPv6: type 2 (packet too big).
    if ipaddress.ip_network(cidr, strict=False).version == 6:
        return _rule(ctx, group, "ingress", "icmpv6", 2, 0, cidr=cidr)
    return _rule(ctx, group, "ingress", "icmp", 3, 4, cidr=cidr)


def _egress_all(ctx: ModelContext, group: str) -> list[Resource]:
    return [
        _rule(ctx, group, "egress", ALL, 0, 0, cidr="0.0.0.0/0"),
        _rule(ctx, group, "egress", ALL, 0, 0, cidr="::/0"),
    ]


def group_names(ctx: ModelContext) -> dict[str, str]:
    name = ctx.name
    return {
        "control-plane": f"masters.{name}",
        "node": f"nodes.{name}",
        "api-elb": f"api-elb.{name}",
        "bastion": f"bastion.{name}",
    }


def build_firewall(ctx: ModelContext) -> list[Resource]:
    spec = ctx.cluster.spec
    names = group_names(ctx)
    cp, nodes, api = names["control-plane"], names["node"], names["api-elb"]
    has_bastion = any(g.spec.role == "Bastion" for g in ctx.groups)
    vpc = Ref("VPC", ctx.name)
    out: list[Resource] = []

    def group(name: str, description: str) -> None:
        out.append(
            Resource("SecurityGroup", name, {"vpc": vpc, "description": description, "tags": ctx.tags(name)})
        )

    group(cp, f"Security group for the control plane of {ctx.name}")
    group(nodes, f"Security group for the nodes of {ctx.name}")
    group(api, f"Security group for the API load balancer of {ctx.name}")
    if has_bastion:
        group(names["bastion"], f"Security group for the bastion of {ctx.name}")

    # Within and between the control plane and the nodes.
    out.append(_rule(ctx, cp, "ingress", ALL, 0, 0, source_group=cp))
    out.append(_rule(ctx, nodes, "ingress", ALL, 0, 0, source_group=nodes))
    out.append(_rule(ctx, nodes, "ingress", ALL, 0, 0, source_group=cp))
    for low, high in NODE_TO_CONTROL_PLANE_TCP:
        out.append(_rule(ctx, cp, "ingress", "tcp", low, high, source_group=nodes))
    out.append(_rule(ctx, cp, "ingress", "udp", 1, 65535, source_group=nodes))
    # Network plugins that tunnel pod traffic in IP-in-IP (protocol 4) need it from nodes to the control
    # plane too (as kops does); VXLAN (UDP) and BGP (TCP 179) are inside the ranges above.
    plugin = spec.networking.plugin() if spec.networking else None
    if plugin in IPIP_PLUGINS:
        out.append(_rule(ctx, cp, "ingress", IPIP, 0, 0, source_group=nodes))
    for sg in (cp, nodes, api):
        out.extend(_egress_all(ctx, sg))

    # SSH: from sshAccess, or only through the bastion when there is one.
    ssh_targets = (cp, nodes)
    if has_bastion:
        bastion = names["bastion"]
        out.extend(_egress_all(ctx, bastion))
        for cidr in spec.ssh_access or []:
            out.append(_rule(ctx, bastion, "ingress", "tcp", 22, 22, cidr=cidr))
        for target in ssh_targets:
            out.append(_rule(ctx, target, "ingress", "tcp", 22, 22, source_group=bastion))
    else:
        for target in ssh_targets:
            for cidr in spec.ssh_access or []:
                out.append(_rule(ctx, target, "ingress", "tcp", 22, 22, cidr=cidr))

    # The API: clients → load balancer 443 (+ path-MTU ICMP); load balancer → control plane 443.
    for cidr in spec.kubernetes_api_access or []:
        out.append(_rule(ctx, api, "ingress", "tcp", 443, 443, cidr=cidr))
        out.append(_icmp_pmtu(ctx, api, cidr))
    out.append(_rule(ctx, cp, "ingress", "tcp", 443, 443, source_group=api))

    # NodePort services, when opened.
    for cidr in spec.node_port_access or []:
        out.append(_rule(ctx, nodes, "ingress", "tcp", 30000, 32767, cidr=cidr))
        out.append(_rule(ctx, nodes, "ingress", "udp", 30000, 32767, cidr=cidr))
    return out
