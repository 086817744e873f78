"""Plan rendering: a golden text, summary and counts, redaction of secret-looking values."""

from __future__ import annotations

import hashlib

import pytest

from pykops.engine.diff import PlanError, format_value, is_sensitive, plan_changes, redact
from pykops.engine.plan import Plan, flatten, render, summary
from pykops.engine.types import Actual, Ref, Resource
from test_engine_fakes import make_kinds

KINDS = make_kinds(
    "VPC",
    "Subnet",
    "LaunchTemplate",
    "SecurityGroupRule",
    "AutoScalingGroup",
    "IAMRole",
    SecurityGroupRule={"immutable": {"protocol"}},
    LaunchTemplate={"update_attrs": {"version"}},
    Subnet={"immutable": {"cidr_block"}, "replaceable": False},
)

USER_DATA = "#!/bin/bash\necho secret-token\n"


def world() -> tuple[list[Resource], list[Actual]]:
    desired = [
        Resource(
            "VPC",
            "c",
            {
                "enable_dns_support": True,
                "cidr_block": "10.0.0.0/16",
                "tags": {"Name": "c", "KubernetesCluster": "c"},
            },
        ),
        Resource("Subnet", "b.c", {"vpc": Ref("VPC", "c"), "cidr_block": "10.0.2.0/24"}),
        Resource("Subnet", "a.c", {"vpc": Ref("VPC", "c"), "cidr_block": "10.0.1.0/24"}),
        Resource(
            "LaunchTemplate",
            "nodes.c",
            {
                "instance_type": "t3.large",
                "user_data": USER_DATA,
                "key_name": None,
                "root_volume": {"size": 64, "type": "gp3"},
                "security_groups": [Ref("SecurityGroupRule", "x")],
            },
        ),
        Resource(
            "AutoScalingGroup",
            "nodes.c",
            {
                "launch_template_version": Ref("LaunchTemplate", "nodes.c", "version"),
                "subnets": [Ref("Subnet", "a.c"), Ref("Subnet", "b.c")],
                "max_size": 3,
            },
        ),
        Resource("SecurityGroupRule", "x", {"protocol": "tcp", "from_port": 443}),
        Resource(
            "IAMRole",
            "new.c",
            {"policy": {"Statement": [{"Effect": "Allow", "Action": ["a", "b"]}]}, "e": {}},
        ),
    ]
    actual = [
        Actual(
            "LaunchTemplate",
            "nodes.c",
            {"id": "lt-1", "version": 2},
            {
                "instance_type": "t3.medium",
                "user_data": "hunter2",
                "key_name": None,
                "root_volume": {"size": 32, "type": "gp3"},
                "security_groups": ["sgr-1"],
            },
        ),
        Actual(
            "AutoScalingGroup", "nodes.c", {"id": "nodes.c"}, {"launch_template_version": 2, "max_size": 3}
        ),
        Actual("SecurityGroupRule", "x", {"id": "sgr-1"}, {"protocol": "udp", "from_port": 443}),
        Actual("IAMRole", "old.c", {"id": "old.c"}, {}),
        Actual("VPC", "gone", {"id": "vpc-9"}, {}),
    ]
    return desired, actual


GOLDEN = """\
Will create resources:
  VPC/c
    cidr_block              10.0.0.0/16
    enable_dns_support      true
    tags.KubernetesCluster  c
    tags.Name               c

  Subnet/a.c
    cidr_block  10.0.1.0/24
    vpc         id of VPC/c

  Subnet/b.c
    cidr_block  10.0.2.0/24
    vpc         id of VPC/c

  IAMRole/new.c
    e                 {}
    policy.Statement  [{Action: [a, b], Effect: Allow}]

Will modify resources:
  LaunchTemplate/nodes.c
    instance_type     t3.medium -> t3.large
    root_volume.size  32 -> 64
    security_groups   [sgr-1] -> [(known after apply: SecurityGroupRule/x)]
    user_data         <sensitive, 7 bytes, sha256 f52fbd32> -> <sensitive, 30 bytes, sha256 3c7a9573>

  AutoScalingGroup/nodes.c
    launch_template_version  2 -> (known after apply: LaunchTemplate/nodes.c.version)
    subnets                  <none> -> [(known after apply: Subnet/a.c), (known after apply: Subnet/b.c)]

Will replace resources:
  SecurityGroupRule/x
    protocol  udp -> tcp  (forces replacement)

Will delete resources:
  VPC/gone
    id  vpc-9

  IAMRole/old.c
    id  old.c
"""


def test_golden_plan() -> None:
    desired, actual = world()
    plan = Plan(plan_changes(desired, actual, KINDS))
    assert plan.render(KINDS) == GOLDEN
    assert "hunter2" not in GOLDEN and "secret-token" not in GOLDEN
    assert not plan.is_empty
    assert plan.counts == {"create": 4, "update": 2, "replace": 1, "delete": 2}
    assert plan.summary() == "4 to create, 2 to modify, 1 to replace, 2 to delete"
    # Without kinds, nothing is marked as forcing the replacement; the rest is identical.
    assert render(plan.changes) == GOLDEN.replace("  (forces replacement)", "")
    # The order of the change list does not matter.
    assert render(list(reversed(plan.changes)), KINDS) == GOLDEN


def test_empty_plan() -> None:
    plan = Plan([])
    assert plan.is_empty
    assert plan.render() == "No changes need to be applied.\n"
    assert plan.counts == {"create": 0, "update": 0, "replace": 0, "delete": 0}
    assert summary([]) == "0 to create, 0 to modify, 0 to replace, 0 to delete"


def test_user_data_is_redacted_on_create() -> None:
    desired = [Resource("LaunchTemplate", "n", {"user_data": USER_DATA, "instance_type": "t3.small"})]
    text = render(plan_changes(desired, [], KINDS))
    digest = hashlib.sha256(USER_DATA.encode()).hexdigest()[:8]
    assert text == (
        "Will create resources:\n"
        "  LaunchTemplate/n\n"
        "    instance_type  t3.small\n"
        f"    user_data      <sensitive, {len(USER_DATA.encode())} bytes, sha256 {digest}>\n"
    )
    assert "secret-token" not in text


def test_secret_looking_names_are_redacted_whole() -> None:
    props = {
        "db_password": "hunter2",
        "Private_Key": {"pem": "-----BEGIN", "bits": 4096},
        "config": {"client_secret": "s3cr3t", "region": "eu-west-1"},
        "public": "visible",
    }
    text = render(plan_changes([Resource("IAMRole", "r", props)], [], KINDS))
    assert "hunter2" not in text and "BEGIN" not in text and "s3cr3t" not in text and "4096" not in text
    assert "    config.client_secret  <sensitive, 6 bytes, sha256 " in text
    assert "    config.region         eu-west-1\n" in text
    assert "    db_password           <sensitive, 7 bytes, sha256 f52fbd32>\n" in text
    assert "    Private_Key           <sensitive, 35 bytes, sha256 " in text  # the dict, canonical JSON
    assert "    public                visible\n" in text


def test_redaction_helpers() -> None:
    assert is_sensitive("user_data") and is_sensitive("a.SECRET_x") and is_sensitive("private_ip")
    assert not is_sensitive("tags.Name") and not is_sensitive("user")
    assert (
        redact(b"abc")
        == redact("abc")
        == f"<sensitive, 3 bytes, sha256 {hashlib.sha256(b'abc').hexdigest()[:8]}>"
    )
    assert format_value(None, "user_data") == "<none>"  # nothing to hide
    assert format_value("x\ny") == '"x\\ny"' and format_value("") == '""'
    assert format_value(Ref("IAMInstanceProfile", "p", "arn")) == "arn of IAMInstanceProfile/p"
    assert flatten({"b": {"c": 1, "a": {}}, "a": 2}) == [("a", 2), ("b.a", {}), ("b.c", 1)]


def test_refused_change_message_redacts_too() -> None:
    kinds = make_kinds("LaunchTemplate", LaunchTemplate={"immutable": {"user_data"}, "replaceable": False})
    desired = [Resource("LaunchTemplate", "n", {"user_data": "new-secret"})]
    actual = [Actual("LaunchTemplate", "n", {"id": "lt-1"}, {"user_data": "old-secret"})]
    with pytest.raises(PlanError) as info:
        plan_changes(desired, actual, kinds)
    assert "secret" not in info.value.message.replace("<sensitive", "")
    assert info.value.message.startswith(
        "LaunchTemplate/n: user_data cannot change (<sensitive, 10 bytes, sha256 "
    )
