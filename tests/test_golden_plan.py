"""Golden plans (plan text out) for the create-cluster cases, and minimal plans for edits — no AWS at all.

"Actual" for the edit cases is the desired state of the unedited spec with every reference resolved to a
fake id: exactly what the kinds would report for a cluster that was applied and not touched since.
Regenerate the golden files with ``make golden`` and review the diff.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.populate import populate
from pykops.api.serialize import load_documents
from pykops.cli.main import main
from pykops.cloud.aws.kinds import all_kinds
from pykops.engine.diff import plan_changes
from pykops.engine.plan import render, summary
from pykops.engine.types import Actual, Ref, Resource
from pykops.model.bootstrap import user_data
from pykops.model.build import build
from pykops.model.context import ImageInfo, ModelContext
from test_golden_create import CASES

GOLDEN = Path(__file__).parent / "golden" / "plan"
UPDATE = os.environ.get("PYKOPS_UPDATE_GOLDEN") == "1"
FINGERPRINT = "0123456789abcdef0123456789abcdef"


def _spec(case: str, capsys: pytest.CaptureFixture[str]) -> tuple[Cluster, list[InstanceGroup]]:
    assert (
        main(["--state=s3://state-bucket", "create", "cluster", *CASES[case], "--dry-run", "-o", "yaml"]) == 0
    )
    objects = load_documents(capsys.readouterr().out)
    cluster = next(o for o in objects if isinstance(o, Cluster))
    return cluster, [o for o in objects if isinstance(o, InstanceGroup)]


def _desired(cluster: Cluster, groups: list[InstanceGroup]) -> list[Resource]:
    cluster, groups = populate(cluster, groups)
    zones = [s.zone for s in cluster.spec.subnets or [] if s.zone]
    ctx = ModelContext(
        cluster,
        groups,
        zones[0][:-1],
        images={g.spec.image or "": ImageInfo("ami-0123456789abcdef0", "/dev/sda1") for g in groups},
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        ssh_fingerprint=FINGERPRINT,
        user_data={g.name: user_data(cluster, g) for g in groups},
    )
    dns = cluster.spec.topology.dns if cluster.spec.topology else None
    if dns is not None and dns.type in ("Public", "Private"):
        ctx.hosted_zone_id = "Z0123456789TESTZONE"  # what update cluster looks up in Route53
    return build(ctx)


def _fake_attrs(resource: Resource) -> dict[str, Any]:
    ident = hashlib.sha256(f"{resource.kind}/{resource.name}".encode()).hexdigest()[:12]
    return {
        "id": resource.props.get("id", f"id-{ident}"),
        "name": resource.name,
        "arn": f"arn:{ident}",
        "version": "1",
        "dns_name": f"{ident}.elb.example",
        "hosted_zone_id": "ZELBZONE",
    }


def _as_actual(desired: list[Resource]) -> list[Actual]:
    attrs = {r.key: _fake_attrs(r) for r in desired}

    def resolve(value: Any) -> Any:
        if isinstance(value, Ref):
            return attrs[value.key][value.attr]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    return [Actual(r.kind, r.name, attrs[r.key], resolve(r.props), shared=r.shared) for r in desired]


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_golden(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    kinds = all_kinds()
    desired = _desired(*_spec(case, capsys))
    shared = _as_actual([r for r in desired if r.shared])  # a shared VPC/subnets exist before the cluster
    changes = plan_changes(desired, shared, kinds)
    text = render(changes, kinds) + f"\nPlan: {summary(changes)}.\n"
    path = GOLDEN / f"{case}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs; run make golden and review"
    assert all(c.action == "create" for c in changes)


@pytest.mark.parametrize("case", sorted(CASES))
def test_applied_cluster_plans_nothing(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    desired = _desired(*_spec(case, capsys))
    assert plan_changes(desired, _as_actual(desired), all_kinds()) == []


def _edited_plan(capsys: pytest.CaptureFixture[str], edit: Any) -> list[tuple[str, str, str, list[str]]]:
    cluster, groups = _spec("tutorial", capsys)
    before = _desired(cluster, groups)
    edit(cluster, {g.name: g for g in groups})
    changes = plan_changes(_desired(cluster, groups), _as_actual(before), all_kinds())
    return [(c.action, c.kind, c.name, [f.path for f in c.fields]) for c in changes]


def test_node_group_size_changes_only_its_asg(capsys: pytest.CaptureFixture[str]) -> None:
    def edit(cluster: Cluster, groups: dict[str, InstanceGroup]) -> None:
        groups["nodes"].spec.min_size = 3
        groups["nodes"].spec.max_size = 3

    assert _edited_plan(capsys, edit) == [
        ("update", "AutoScalingGroup", "nodes.proyecto.k8s.local", ["max_size", "min_size"])
    ]


def test_machine_type_changes_the_launch_template_and_its_asg_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def edit(cluster: Cluster, groups: dict[str, InstanceGroup]) -> None:
        groups["nodes"].spec.machine_type = "t3.large"

    plan = _edited_plan(capsys, edit)
    assert plan[0] == ("update", "LaunchTemplate", "nodes.proyecto.k8s.local", ["instance_type"])
    # The group moves to the template's new version: the only other change.
    assert plan[1:] == [
        ("update", "AutoScalingGroup", "nodes.proyecto.k8s.local", ["launch_template_version"])
    ]


def test_admin_access_changes_exactly_the_rules_involved(capsys: pytest.CaptureFixture[str]) -> None:
    def edit(cluster: Cluster, groups: dict[str, InstanceGroup]) -> None:
        cluster.spec.kubernetes_api_access = ["203.0.113.0/24"]

    plan = _edited_plan(capsys, edit)
    assert {(a, k) for a, k, _, _ in plan} == {
        ("create", "SecurityGroupRule"),
        ("delete", "SecurityGroupRule"),
    }
    created = sorted(n for a, _, n, _ in plan if a == "create")
    assert created == [
        "api-elb.proyecto.k8s.local/ingress/icmp/3-4/203.0.113.0/24",
        "api-elb.proyecto.k8s.local/ingress/tcp/443-443/203.0.113.0/24",
    ]
    deleted = sorted(n for a, _, n, _ in plan if a == "delete")
    assert len(deleted) == 4 and all(n.startswith("api-elb.") for n in deleted)


def test_removed_instance_group_is_deleted(capsys: pytest.CaptureFixture[str]) -> None:
    cluster, groups = _spec("tutorial", capsys)
    extra = groups[-1].model_copy(deep=True)
    extra.metadata.name = "spot"
    before = _desired(cluster, [*groups, extra])
    changes = plan_changes(_desired(cluster, groups), _as_actual(before), all_kinds())
    assert sorted((c.action, c.kind, c.name) for c in changes) == [
        ("delete", "AutoScalingGroup", "spot.proyecto.k8s.local"),
        ("delete", "LaunchTemplate", "spot.proyecto.k8s.local"),
    ]
    # The group goes before its template.
    assert [c.kind for c in changes] == ["AutoScalingGroup", "LaunchTemplate"]
