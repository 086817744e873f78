"""Golden tests in the style of kops' tests/integration/create_cluster: flags in, expected YAML out.

Regenerate after an intended change with ``make golden`` (PYKOPS_UPDATE_GOLDEN=1) and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.populate import populate
from pykops.api.serialize import dump_yaml, load_documents, to_dict
from pykops.cli.main import main

GOLDEN = Path(__file__).parent / "golden" / "create_cluster"
UPDATE = os.environ.get("PYKOPS_UPDATE_GOLDEN") == "1"

CASES: dict[str, list[str]] = {
    # The tutorial's cluster (its v1.8.4 is long unsupported: the channel's recommended version is used).
    "tutorial": [
        "--name=proyecto.k8s.local",
        "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
        "--master-zones=eu-west-1a,eu-west-1b,eu-west-1c",
        "--master-count=3",
        "--node-count=1",
        "--node-size=t2.small",
        "--master-size=t2.small",
        "--networking=kubenet",
        "--authorization=RBAC",
    ],
    "minimal": ["--name=minimal.example.com", "--zones=us-east-1a"],
    "private_calico": [
        "--name=private.example.com",
        "--zones=eu-central-1a,eu-central-1b,eu-central-1c",
        "--control-plane-count=3",
        "--topology=private",
        "--networking=calico",
        "--bastion",
        "--admin-access=203.0.113.0/24",
    ],
    "shared_vpc": [
        "--name=shared.k8s.local",
        "--zones=us-west-2a,us-west-2b",
        "--vpc=vpc-0123456789abcdef0",
        "--subnets=subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
        "--control-plane-count=1",
        "--node-count=2",
        "--cloud-labels=team=platform,env=test",
    ],
    "ha_5": [
        "--name=ha5.example.com",
        "--zones=us-east-1a,us-east-1b,us-east-1c,us-east-1d,us-east-1e",
        "--control-plane-count=5",
        "--control-plane-size=m6i.large",
        "--node-size=m6i.xlarge",
        "--node-count=5",
        "--kubernetes-version=1.33.5",
        "--api-loadbalancer-type=internal",
    ],
}


def _create(args: list[str], output: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["--state=memfs://tests", "create", "cluster", *args, "--dry-run", "-o", output])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run make golden"
    assert actual == path.read_text(encoding="utf-8"), f"{path.name} differs; run make golden and review"


@pytest.mark.parametrize("case", sorted(CASES))
def test_create_cluster_golden(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _create(CASES[case], "yaml", capsys)
    _check_golden(GOLDEN / f"{case}.yaml", out)
    # The output is itself a valid, round-tripping kops manifest.
    objects = load_documents(out, case)
    assert dump_yaml(objects) == out
    # JSON output carries the same objects.
    as_json = json.loads(_create(CASES[case], "json", capsys))
    assert [to_dict(o) for o in objects] == as_json["items"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_completed_spec_golden(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The completed spec (defaults applied) is pinned too: it is what the model builders will read."""
    objects = load_documents(_create(CASES[case], "yaml", capsys), case)
    cluster = next(o for o in objects if isinstance(o, Cluster))
    groups = [o for o in objects if isinstance(o, InstanceGroup)]
    completed, completed_groups = populate(cluster, groups)
    _check_golden(GOLDEN / f"{case}.completed.yaml", dump_yaml([completed, *completed_groups]))
    # populate never overrides what the user set, and is idempotent.
    again, again_groups = populate(completed, completed_groups)
    assert again == completed and again_groups == completed_groups
    assert completed.spec.kubernetes_version == cluster.spec.kubernetes_version


def test_tutorial_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """Spot checks that the golden file says what the tutorial needs, independent of formatting."""
    objects = load_documents(_create(CASES["tutorial"], "yaml", capsys), "tutorial")
    cluster = next(o for o in objects if isinstance(o, Cluster))
    groups = {o.name: o for o in objects if isinstance(o, InstanceGroup)}
    assert sorted(groups) == ["master-eu-west-1a", "master-eu-west-1b", "master-eu-west-1c", "nodes"]
    for zone in ("eu-west-1a", "eu-west-1b", "eu-west-1c"):
        cp = groups[f"master-{zone}"]
        assert (cp.spec.role, cp.spec.min_size, cp.spec.max_size, cp.spec.subnets) == ("Master", 1, 1, [zone])
    assert groups["nodes"].spec.min_size == groups["nodes"].spec.max_size == 1
    assert cluster.spec.networking is not None and cluster.spec.networking.plugin() == "kubenet"
    assert cluster.spec.authorization is not None and cluster.spec.authorization.mode() == "RBAC"
    assert cluster.spec.topology is not None and cluster.spec.topology.dns is not None
    assert cluster.spec.topology.dns.type == "None"  # .k8s.local: gossip, no DNS
    assert cluster.spec.api is not None and cluster.spec.api.load_balancer is not None
    assert cluster.spec.api.load_balancer.class_ == "Network"
    for etcd in cluster.spec.etcd_clusters or []:
        members = etcd.etcd_members or []
        assert [m.instance_group for m in members] == [f"master-eu-west-1{z}" for z in "abc"]
        assert all(m.encrypted_volume for m in members)
    cidrs = [s.cidr for s in cluster.spec.subnets or []]
    assert len(set(cidrs)) == 3 and all(c and c.startswith("172.20.") for c in cidrs)
    completed, completed_groups = populate(cluster, list(groups.values()))
    for g in completed_groups:
        md = g.spec.instance_metadata
        assert md is not None and md.http_tokens == "required" and md.http_put_response_hop_limit == 1
        assert g.spec.root_volume_encryption is True and g.spec.root_volume_type == "gp3"
    assert yaml.safe_load(dump_yaml([completed]))["spec"]["kubeAPIServer"]["authorizationMode"] == "Node,RBAC"
