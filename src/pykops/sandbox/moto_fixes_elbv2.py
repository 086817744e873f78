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


ELBV2_FIXES: tuple[FidelityFix, ...] = (
    FidelityFix(
        "elbv2-load-balancer-arn-type",
        "a network load balancer's ARN is ...:loadbalancer/net/<name>/<id> and its listeners' "
        "...:listener/net/... (gateway: gwy)",
        _fix_load_balancer_arn_type,
    ),
)
