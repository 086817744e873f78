"""The least-privilege IAM policy for pykops, derived from pykops' own source code.

Instead of a hand-kept list of actions (which silently falls behind the code), the policy is computed from
the code: every module of ``src/pykops`` is parsed (``ast``) and

* the AWS services it uses are read from where it makes clients: ``<x>.client("ec2")``,
  ``boto3.client("s3")``, and ``AwsCloud``'s client properties (``cloud.ec2``, ``cloud.iam``...);
* every boto3 method name it can call is collected: attribute calls (``ec2.describe_vpcs(...)``) and
  string constants (``get_paginator("describe_instances")``, ``paginate(client, "describe_subnets", ...)``,
  ``getattr(client, operation)``), and waiters (``get_waiter("instance_running")``) by their operation;
* each name is looked up in botocore's service model of those services (``describe_vpcs`` →
  ``DescribeVpcs``), and the operation is mapped to its IAM action with the service's signing name
  (``elbv2`` → ``elasticloadbalancing:``). A module that makes no client of its own (it receives one) is
  matched against every service pykops uses: an over-approximation, never an omission.

Over-approximation is the safe direction (a string that happens to equal an operation name adds an action);
``tests/test_iam_policy.py`` checks the other direction, by recording every call the update/delete path
really makes (``CallLog``) and asserting the policy covers it.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

from pykops.errors import PykopsError

#: Services pykops talks to (``AwsCloud.SERVICES``; kept here to avoid importing boto3 clients).
SERVICES: tuple[str, ...] = ("ec2", "iam", "autoscaling", "elbv2", "elb", "route53", "sts", "s3")

AWS_MODULES = frozenset({"boto3", "botocore"})

#: ``AwsCloud`` properties that return a client of the same name.
CLIENT_PROPERTIES = frozenset({"ec2", "iam", "autoscaling", "elbv2"})

#: Modules not scanned, and why: they never run with the kops user's credentials.
EXCLUDED: dict[str, str] = {
    "sandbox": "talks only to the local AWS emulator",
    "ops/iam_bootstrap.py": "creates the kops user itself, so it runs with an administrator's credentials",
}

#: S3 is the one service whose IAM action names differ from its API operation names (AWS's Service
#: Authorization Reference); every other service pykops uses names its actions after its operations.
S3_ACTIONS: dict[str, str] = {
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "DeleteObjects": "DeleteObject",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "ListObjectVersions": "ListBucketVersions",
}

#: Permissions AWS checks in addition to the operation's own (documented by AWS for these operations):
#: launch templates and instances carry an instance profile (iam:PassRole); an Auto Scaling group with a
#: launch template needs its caller to be allowed to launch (ec2:RunInstances, ec2:CreateTags); the first
#: load balancer and Auto Scaling group of an account create their service-linked role.
_ASG_LAUNCH = ("iam:PassRole", "ec2:RunInstances", "ec2:CreateTags")
IMPLIED: dict[str, tuple[str, ...]] = {
    "ec2:RunInstances": ("iam:PassRole",),
    "ec2:CreateLaunchTemplate": ("iam:PassRole",),
    "ec2:CreateLaunchTemplateVersion": ("iam:PassRole",),
    "autoscaling:CreateAutoScalingGroup": (*_ASG_LAUNCH, "iam:CreateServiceLinkedRole"),
    "autoscaling:UpdateAutoScalingGroup": _ASG_LAUNCH,
    "elasticloadbalancing:CreateLoadBalancer": ("iam:CreateServiceLinkedRole",),
}

#: IAM's limit on the size of a customer-managed policy document (whitespace excluded).
MANAGED_POLICY_LIMIT = 6144
POLICY_VERSION = "2012-10-17"


@dataclass(frozen=True, order=True)
class Operation:
    """One AWS API operation: boto3 service name and operation name (``ec2``, ``DescribeVpcs``)."""

    service: str
    name: str

    @property
    def action(self) -> str:
        """The IAM action that authorizes it (``ec2:DescribeVpcs``, ``s3:ListBucket``...)."""
        return iam_action(self.service, self.name)


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _operations(service: str) -> dict[str, str]:
    """``describe_vpcs`` → ``DescribeVpcs`` for one service."""
    model = _session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@cache
def _waiters(service: str) -> dict[str, str]:
    """``instance_running`` → ``DescribeInstances`` for one service's waiters."""
    try:
        model = _session().get_waiter_model(service)
    except Exception:  # a service without waiters (botocore raises DataNotFoundError)
        return {}
    return {xform_name(name): model.get_waiter(name).operation for name in model.waiter_names}


@cache
def _signing_name(service: str) -> str:
    model = _session().get_service_model(service)
    return str(model.signing_name or model.endpoint_prefix)


def iam_action(service: str, operation: str) -> str:
    """The IAM action for a boto3 service and operation name."""
    if service == "s3":
        operation = S3_ACTIONS.get(operation, operation)
    return f"{_signing_name(service)}:{operation}"


def package_root() -> Path:
    """The ``pykops`` package directory."""
    return Path(__file__).resolve().parent.parent


def _excluded(relative: str) -> bool:
    return any(relative == e or relative.startswith(e.rstrip("/") + "/") for e in EXCLUDED)


def _module_services(tree: ast.AST) -> set[str]:
    services: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "client":
            if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in SERVICES:
                services.add(str(node.args[0].value))
        elif isinstance(node, ast.Attribute) and node.attr in CLIENT_PROPERTIES:
            services.add(node.attr)
    return services


def _touches_aws(tree: ast.AST) -> bool:
    """Whether a module that makes no client could still call AWS: it imports boto3/botocore, or handles a
    value named ``client`` (a parameter or variable holding a client made elsewhere)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in AWS_MODULES for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in AWS_MODULES:
            return True
        if (isinstance(node, ast.Name) and node.id == "client") or (
            isinstance(node, ast.arg) and node.arg == "client"
        ):
            return True
    return False


def _module_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(method-like names, waiter names) used in a module."""
    names: set[str] = set()
    waiters: set[str] = set()
    for node in ast.walk(tree):
        # Attributes: calls, and bound methods passed along (``retry(cloud.ec2.create_vpc, ...)``).
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)
        is_waiter = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if is_waiter and node.func.attr == "get_waiter" and node.args:  # type: ignore[attr-defined]
            first = node.args[0]  # type: ignore[attr-defined]
            if isinstance(first, ast.Constant):
                waiters.add(str(first.value))
    return names, waiters


def scan_source(source: str, filename: str = "<source>") -> set[Operation]:
    """The AWS operations one module's source can call (see the module docstring)."""
    tree = ast.parse(source, filename)
    services = _module_services(tree)
    if not services:
        if not _touches_aws(tree):
            return set()
        services = set(SERVICES)  # it receives a client from elsewhere: any service
    names, waiters = _module_names(tree)
    found: set[Operation] = set()
    for service in services:
        ops = _operations(service)
        found.update(Operation(service, ops[n]) for n in names if n in ops)
        waiter_ops = _waiters(service)
        found.update(Operation(service, waiter_ops[w]) for w in waiters if w in waiter_ops)
    return found


def scan_package(root: Path | None = None) -> dict[str, set[Operation]]:
    """Module path (relative to the package) → the AWS operations it can call; excluded modules skipped."""
    root = root or package_root()
    result: dict[str, set[Operation]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if _excluded(relative):
            continue
        try:
            ops = scan_source(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError) as exc:
            # Never a partial policy: a module that cannot be read could call anything.
            raise PykopsError(f"cannot derive the IAM policy: cannot parse {path}: {exc}") from None
        if ops:
            result[relative] = ops
    return result


def used_operations(root: Path | None = None) -> set[Operation]:
    """Every AWS operation pykops can call with the user's credentials (the package is scanned once)."""
    return set(_used_operations(root or package_root()))


@cache
def _used_operations(root: Path) -> frozenset[Operation]:
    found = frozenset(op for ops in scan_package(root).values() for op in ops)
    if not found:
        raise PykopsError(f"cannot derive the IAM policy: no pykops source with AWS calls under {root}")
    return found


def policy_actions(operations: Iterable[Operation] | None = None) -> list[str]:
    """The sorted IAM actions that authorize ``operations`` (default: :func:`used_operations`)."""
    ops = used_operations() if operations is None else set(operations)
    actions = {op.action for op in ops}
    for action in list(actions):
        actions.update(IMPLIED.get(action, ()))
    return sorted(actions)


def _document(actions: list[str]) -> dict[str, object]:
    return {
        "Version": POLICY_VERSION,
        "Statement": [{"Sid": "PykopsLeastPrivilege", "Effect": "Allow", "Action": actions, "Resource": "*"}],
    }


def compact(document: dict[str, object]) -> str:
    """The document as IAM counts its size (no whitespace)."""
    return json.dumps(document, separators=(",", ":"))


def policy_documents(
    actions: list[str] | None = None, *, limit: int = MANAGED_POLICY_LIMIT
) -> list[dict[str, object]]:
    """The least-privilege policy, split into as few documents as keep each under IAM's size limit."""
    actions = policy_actions() if actions is None else actions
    documents: list[list[str]] = [[]]
    for action in actions:
        if documents[-1] and len(compact(_document([*documents[-1], action]))) > limit:
            documents.append([])
        documents[-1].append(action)
    return [_document(chunk) for chunk in documents]
