"""Fidelity fixes for moto's Elastic Load Balancing v2 (see :mod:`pykops.sandbox.aws_emulator`); tests:
``tests/test_aws_emulator_ec2.py``."""

from __future__ import annotations

import contextvars
import inspect
from typing import Any

from pykops.sandbox.fidelity import FidelityFix

# The ARN segment of the load balancer being created: app, net or gwy.
_LB_ARN_TYPE: contextvars.ContextVar[str] = contextvars.ContextVar("pykops_lb_arn_type", default="app")
_ARN_TYPES = {"application": "app", "network": "net", "gateway": "gwy"}


def _fix_load_balancer_arn_type() -> None:
    """Give network (and gateway) load balancers ``loadbalancer/net/`` (``gwy/``) ARNs.

    moto's ``make_arn_for_load_balancer`` always writes ``loadbalancer/app/<name>/<id>``, whatever the
    ``Type``; listener (and rule) ARNs are derived from it, so they read ``listener/app/...`` too. AWS writes
    ``loadbalancer/net/...`` and ``listener/net/...`` for a network load balancer (``gwy`` for a gateway one).
    """
    from moto.elbv2 import models

    elbv2_models: Any = models
    make_arn = elbv2_models.make_arn_for_load_balancer
    create_load_balancer = elbv2_models.ELBv2Backend.create_load_balancer
    signature = inspect.signature(create_load_balancer)

    def _make_arn_for_load_balancer(account_id: str, lb_id: str, name: str, region_name: str) -> str:
        arn = str(make_arn(account_id=account_id, lb_id=lb_id, name=name, region_name=region_name))
        return arn.replace(":loadbalancer/app/", f":loadbalancer/{_LB_ARN_TYPE.get()}/", 1)

    def _create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        lb_type = signature.bind(self, *args, **kwargs).arguments.get("loadbalancer_type")
        token = _LB_ARN_TYPE.set(_ARN_TYPES.get(str(lb_type or "application"), "app"))
        try:
            return create_load_balancer(self, *args, **kwargs)
        finally:
            _LB_ARN_TYPE.reset(token)

    elbv2_models.make_arn_for_load_balancer = _make_arn_for_load_balancer
    elbv2_models.ELBv2Backend.create_load_balancer = _create_load_balancer


def _fix_classic_elb_dns_name() -> None:
    """Give a classic load balancer AWS's DNS name: ``<name>-<digits>.<region>.elb.amazonaws.com``
    (``internal-`` first for an internal one); moto writes ``<name>.us-east-1.elb.amazonaws.com`` in every
    region, so a Service's address would name the wrong region."""
    import zlib

    from moto.elb import models

    elb_models: Any = models
    create = elb_models.ELBBackend.create_load_balancer

    def _create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        balancer = create(self, *args, **kwargs)
        digits = zlib.crc32(f"{self.account_id}/{self.region_name}/{balancer.name}".encode()) % 10**10
        prefix = "internal-" if balancer.scheme == "internal" else ""
        balancer.dns_name = f"{prefix}{balancer.name}-{digits:010d}.{self.region_name}.elb.amazonaws.com"
        return balancer

    elb_models.ELBBackend.create_load_balancer = _create_load_balancer


ELBV2_FIXES: tuple[FidelityFix, ...] = (
    FidelityFix(
        "elb-classic-dns-name",
        "a classic load balancer's DNSName is <name>-<digits>.<region>.elb.amazonaws.com (internal-... when "
        "internal), not <name>.us-east-1.elb.amazonaws.com in every region",
        _fix_classic_elb_dns_name,
    ),
    FidelityFix(
        "elbv2-load-balancer-arn-type",
        "a network load balancer's ARN is ...:loadbalancer/net/<name>/<id> and its listeners' "
        "...:listener/net/... (gateway: gwy)",
        _fix_load_balancer_arn_type,
    ),
)
