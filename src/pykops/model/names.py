"""Names of cloud resources, shared by the model (desired) and the AWS kinds (actual)."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress

ELB_NAME_MAX = 32


def elb_name(prefix: str, cluster: str) -> str:
    """A load balancer / target group name of at most 32 characters, deterministic, kops-like.

    ``api-proyecto-k8s-local-1a2b3c``: the prefix, the cluster name with dots as dashes (truncated), and a
    short hash of the full cluster name so truncated names of different clusters never collide.
    """
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:6]
    room = ELB_NAME_MAX - len(prefix) - len(digest) - 2
    middle = cluster.replace(".", "-")[:room].strip("-")
    return f"{prefix}-{middle}-{digest}"


_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "icmp", "icmpv6"})


def canonical_protocol(protocol: str | int) -> str:
    """The protocol as EC2 reports it: ``tcp``/``udp``/``icmp``/``icmpv6``, ``-1`` (all), or a number."""
    text = str(protocol).strip().lower()
    return _PROTOCOL_NAMES.get(text, text)


def has_ports(protocol: str | int) -> bool:
    """Whether ``from_port``/``to_port`` mean something for this protocol (ICMP: type and code)."""
    return canonical_protocol(protocol) in _PORT_PROTOCOLS


def rule_name(
    group_name: str,
    direction: str,
    protocol: str | int,
    from_port: int | None,
    to_port: int | None,
    source: str,
) -> str:
    """The logical name of a security group rule: ``<group>/<direction>/<protocol>/<from>-<to>/<source>``.

    ``source`` is a CIDR (IPv4 or IPv6, written canonically) or the source group's logical name. For
    protocols without ports (``-1``, ``4``...) and for "every ICMP type" the port part is ``all``; for
    ICMP, ``from``/``to`` are the type and the code (``icmp/3-4`` is "fragmentation needed").
    """
    proto = canonical_protocol(protocol)
    if not has_ports(proto) or (from_port in (None, -1) and to_port in (None, -1)):
        ports = "all"
    else:
        ports = f"{from_port}-{to_port}"
    with contextlib.suppress(ValueError):
        source = str(ipaddress.ip_network(source, strict=False))
    return f"{group_name}/{direction}/{proto}/{ports}/{source}"


def ssh_key_name(cluster: str, md5_hex: str) -> str:
    """kops' key pair name: ``kubernetes.<cluster>-<md5 fingerprint with colons>``."""
    colons = ":".join(md5_hex[i : i + 2] for i in range(0, len(md5_hex), 2))
    return f"kubernetes.{cluster}-{colons}"
