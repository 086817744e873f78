"""Names of cloud resources, shared by the model (desired) and the AWS kinds (actual)."""

from __future__ import annotations

import hashlib

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


def rule_name(group: str, direction: str, protocol: str, from_port: int, to_port: int, source: str) -> str:
    """The logical name of a security-group rule: its content, so actual rules match desired ones."""
    return f"{group}/{direction}/{protocol}/{from_port}-{to_port}/{source}"


def ssh_key_name(cluster: str, md5_hex: str) -> str:
    """kops' key pair name: ``kubernetes.<cluster>-<md5 fingerprint with colons>``."""
    colons = ":".join(md5_hex[i : i + 2] for i in range(0, len(md5_hex), 2))
    return f"kubernetes.{cluster}-{colons}"
