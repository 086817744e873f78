"""Every AWS resource kind pykops manages, by kind name."""

from __future__ import annotations

from pykops.engine.types import Kind


def all_kinds() -> dict[str, Kind]:
    from pykops.cloud.aws.compute import COMPUTE_KINDS
    from pykops.cloud.aws.dns import DNS_KINDS
    from pykops.cloud.aws.elb import ELB_KINDS
    from pykops.cloud.aws.iam import IAM_KINDS
    from pykops.cloud.aws.loadbalancer import LB_KINDS
    from pykops.cloud.aws.network import NETWORK_KINDS

    kinds: dict[str, Kind] = {}
    for kind in [*NETWORK_KINDS, *IAM_KINDS, *LB_KINDS, *COMPUTE_KINDS, *ELB_KINDS, *DNS_KINDS]:
        if kind.kind in kinds:
            raise ValueError(f"resource kind {kind.kind} is defined twice")
        kinds[kind.kind] = kind
    return kinds
