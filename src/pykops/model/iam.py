"""IAM builder: roles, least-privilege inline policies and instance profiles per role (pure).

Mutating EC2/Auto Scaling/ELB actions are allowed only on resources tagged for this cluster (or, for
creates, only when the request tags them for this cluster); reads are allowed where AWS offers no
resource-level scoping (Describe*). State-store access is limited to the cluster's prefix: the control
plane reads all of it and writes only etcd backups; nodes read only what a node needs: their own config,
and of the keystore only the leaf keysets ``kubelet`` and ``kube-proxy`` (:data:`NODE_KEYSETS`), never a
CA's private key (``pki/private/kubernetes-ca/`` and the other CAs stay unreadable).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from pykops.engine.types import Ref, Resource
from pykops.model.context import ModelContext

ASSUME_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}

CONTROL_PLANE_READ = [
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSnapshots",
    "ec2:DescribeSubnets",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    "ec2:DescribeVpcs",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeTags",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
]
# Actions on existing resources: only those tagged KubernetesCluster=<cluster>.
CONTROL_PLANE_TAGGED = [
    "ec2:AttachVolume",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateRoute",
    "ec2:DeleteRoute",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSnapshot",
    "ec2:DeleteVolume",
    "ec2:DetachVolume",
    "ec2:ModifyInstanceAttribute",
    "ec2:ModifyVolume",
    "ec2:RevokeSecurityGroupIngress",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:SetSecurityGroups",
]
# Creates: only when the request itself tags the new resource for this cluster (the EBS CSI driver tags its
# volumes and snapshots KubernetesCluster=<cluster> with --extra-tags).
CONTROL_PLANE_CREATE = [
    "ec2:CreateSecurityGroup",
    "ec2:CreateSnapshot",
    "ec2:CreateVolume",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
]
CLUSTER_AUTOSCALER_READ = [
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:GetInstanceTypesFromInstanceRequirements",
]
NODE_READ = ["ec2:DescribeInstances", "ec2:DescribeRegions", "ec2:DescribeInstanceTypes"]
# The Amazon VPC CNI (networking.amazonvpc) gives pods addresses from the nodes' network interfaces; every
# machine's ipamd manages its own interfaces (kops' addAmazonVPCCNIPermissions).
AMAZON_VPC_CNI = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:AttachNetworkInterface",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeTags",
    "ec2:DetachNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:UnassignPrivateIpAddresses",
]
# The keysets (with private keys) a worker node reads: pykops.nodeup.config.NODE_KEYSETS (not imported:
# the model does not depend on nodeup; a test checks they agree).
NODE_KEYSETS = ("kubelet", "kube-proxy")
ECR_READ = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeRepositories",
    "ecr:GetAuthorizationToken",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:ListImages",
]


def _statement(
    actions: list[str], resource: Any = "*", condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions), "Resource": resource}
    if condition:
        stmt["Condition"] = condition
    return stmt


def _state_store_statements(ctx: ModelContext, role: str) -> list[dict[str, Any]]:
    base = ctx.cluster.spec.config_base or ""
    parsed = urlparse(base)
    if parsed.scheme != "s3":
        return []  # file:// and memfs:// stores are not reachable from instances
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    arn = f"arn:{ctx.partition}:s3:::{bucket}"
    statements = [
        _statement(["s3:GetBucketLocation", "s3:GetEncryptionConfiguration"], arn),
        _statement(["s3:ListBucket"], arn, {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}),
    ]
    if role == "control-plane":
        statements.append(_statement(["s3:GetObject"], f"{arn}/{prefix}/*"))
        statements.append(_statement(["s3:DeleteObject", "s3:PutObject"], f"{arn}/{prefix}/backups/etcd/*"))
    else:
        readable = [
            f"{arn}/{prefix}/addons/*",
            f"{arn}/{prefix}/cluster-completed.spec",
            f"{arn}/{prefix}/igconfig/node/*",
            f"{arn}/{prefix}/pki/issued/*",
            *(f"{arn}/{prefix}/pki/private/{name}/*" for name in NODE_KEYSETS),
            f"{arn}/{prefix}/secrets/dockerconfig",
            f"{arn}/{prefix}/releases/*",
        ]
        statements.append(_statement(["s3:GetObject"], sorted(readable)))
    return statements


def policy_document(ctx: ModelContext, role: str) -> dict[str, Any]:
    """The inline policy of a role: ``control-plane``, ``node`` or ``bastion``."""
    tag_key = "KubernetesCluster"
    statements: list[dict[str, Any]] = []
    if role == "control-plane":
        statements.append(_statement(CONTROL_PLANE_READ))
        statements.append(
            _statement(
                CONTROL_PLANE_TAGGED, condition={"StringEquals": {f"aws:ResourceTag/{tag_key}": ctx.name}}
            )
        )
        statements.append(
            _statement(
                CONTROL_PLANE_CREATE, condition={"StringEquals": {f"aws:RequestTag/{tag_key}": ctx.name}}
            )
        )
        statements.append(
            _statement(
                ["ec2:CreateTags"],
                condition={
                    "StringEquals": {
                        f"aws:RequestTag/{tag_key}": ctx.name,
                        "ec2:CreateAction": ["CreateSecurityGroup", "CreateSnapshot", "CreateVolume"],
                    }
                },
            )
        )
        cas = ctx.cluster.spec.cluster_autoscaler
        if cas is not None and cas.enabled:
            # cluster-autoscaler (kops' AddClusterAutoscalerPermissions): reads, and resizing only the groups
            # tagged for its auto-discovery in this cluster (the worker groups; never the control plane's).
            statements.append(_statement(CLUSTER_AUTOSCALER_READ))
            statements.append(
                _statement(
                    ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    condition={
                        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{ctx.name}": "1"}
                    },
                )
            )
    elif role == "node":
        statements.append(_statement(NODE_READ))
    if role in ("control-plane", "node"):
        networking = ctx.cluster.spec.networking
        if networking is not None and networking.plugin() == "amazonvpc":
            statements.append(_statement(AMAZON_VPC_CNI))
            statements.append(
                _statement(
                    ["ec2:CreateTags"],
                    f"arn:{ctx.partition}:ec2:*:*:network-interface/*",
                )
            )
        iam = ctx.cluster.spec.iam
        if iam is None or iam.allow_container_registry is not False:
            statements.append(_statement(ECR_READ))
        statements.extend(_state_store_statements(ctx, role))
    if not statements:  # a bastion needs nothing from AWS; an empty policy is invalid, so deny-nothing reads
        statements.append(_statement(["ec2:DescribeRegions"]))
    return {"Version": "2012-10-17", "Statement": statements}


def role_names(ctx: ModelContext) -> dict[str, str]:
    return {
        "control-plane": f"masters.{ctx.name}",
        "node": f"nodes.{ctx.name}",
        "bastion": f"bastions.{ctx.name}",
    }


def build_iam(ctx: ModelContext) -> list[Resource]:
    wanted = {"control-plane", "node"}
    if any(g.spec.role == "Bastion" for g in ctx.groups):
        wanted.add("bastion")
    out: list[Resource] = []
    for role, name in role_names(ctx).items():
        if role not in wanted:
            continue
        out.append(Resource("IAMRole", name, {"assume_role_policy": ASSUME_EC2, "tags": ctx.tags(name)}))
        out.append(
            Resource(
                "IAMRolePolicy",
                name,
                {"role": Ref("IAMRole", name, "name"), "policy_document": policy_document(ctx, role)},
            )
        )
        out.append(Resource("IAMInstanceProfile", name, {"tags": ctx.tags(name)}))
        out.append(
            Resource(
                "IAMInstanceProfileRole",
                name,
                {
                    "instance_profile": Ref("IAMInstanceProfile", name, "name"),
                    "role": Ref("IAMRole", name, "name"),
                },
            )
        )
    return out
