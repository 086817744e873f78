"""Bad inputs, flags and YAML: every one is refused with one clear line and leaves the state store untouched.

One table-driven test. Each case runs ``pykops.cli.main.main`` in-process against a ``file://`` state store
that already holds a valid cluster (``existing.k8s.local``: 3 zones, 3 control-plane nodes, kubenet), and
checks:

1. the exit code: 2 for usage errors (missing, contradictory or malformed flags), 1 for everything else,
   including flag values that only spec validation refuses (an unknown instance type, an unsupported
   Kubernetes version);
2. stderr is exactly one ``Error: ...`` line (after any ``Warning:`` lines), without a traceback, and
   contains the part of the message that says what is wrong and how to fix it (a string, or a tuple of
   strings that must all be there, ``Not(...)`` texts that must not, ``Count(...)`` texts that must be
   there an exact number of times and an ``End(...)`` text the line must end with);
3. nothing under the test's directory changed: the same paths with the same bytes (the state store, the
   input files, the home directory and the working directory all live there).

Cases that show a product defect are marked ``xfail(strict=True)`` with the reason: they start to fail
(XPASS) once the defect is fixed, so the mark can then be removed. When only the wording is wrong, a passing
twin case (same input, id without the suffix) still checks the exit code, the single line and that nothing
was written.

``create -f`` and ``replace -f`` cases start from the valid ``bad_inputs/cluster.yaml`` (``new.k8s.local``)
and break one thing, given as ``{"<object name>:<field path>": new value}`` (``DELETE`` removes the field;
``{"<object name>": DELETE}`` removes the whole object); other file cases give the file's text. The file is
written to ``bad.yaml`` (argv placeholder ``{yaml}``) or ``id_bad`` (placeholder ``{key}``) in the test's
directory.

The ``test_*`` functions after the table check that what the even-count refusals suggest (the
``--allow-even-control-plane`` flag, the annotation) is really accepted.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pykops.cli.main import main

BASE_CLUSTER_FILE = Path(__file__).parent / "bad_inputs" / "cluster.yaml"

EXISTING = "existing.k8s.local"
NAME = ["--name", EXISTING]
ZONE = ["--zones", "eu-west-1a"]
CREATE = ["create", "cluster"]
NEW = [*CREATE, "--name", "new.k8s.local", *ZONE]
CREATE_FILE = ["create", "-f", "{yaml}"]
NO_STATE = "<no --state>"  # first argv item: run without --state (the test adds one otherwise)
DELETE = object()  # as a value in a YAML change: remove the field

# A well-formed OpenSSH public key line (the blob only needs to be valid base64 for pykops).
PUBLIC_KEY = (
    "ssh-ed25519 "
    + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
    + " admin@example\n"
)
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
CLUSTER_DOC = "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: {name}\nspec: {{}}\n"
IG_DOC = (
    "apiVersion: kops.k8s.io/v1alpha2\nkind: InstanceGroup\nmetadata:\n  name: {name}\n"
    "  labels:\n    kops.k8s.io/cluster: {cluster}\n"
    "spec:\n  role: Node\n  machineType: t3.medium\n  minSize: 1\n  maxSize: 1\n  subnets: [eu-west-1a]\n"
)


@dataclass(frozen=True)
class Not:
    """In a case's message tuple: a text the error line must not contain."""

    text: str


@dataclass(frozen=True)
class Count:
    """In a case's message tuple: a text the error line must contain exactly ``times`` times."""

    text: str
    times: int


@dataclass(frozen=True)
class End:
    """In a case's message tuple: the text the error line must end with."""

    text: str


def defect(reason: str) -> pytest.MarkDecorator:
    """A case the product gets wrong today (see the reason); XPASS once fixed."""
    return pytest.mark.xfail(strict=True, reason=reason)


# How every even control-plane / etcd member count refusal ends: the flag only exists on create cluster,
# so the message says so, and gives the annotation for create -f, replace -f and edits.
EVEN_HINT = (
    "to accept it anyway, create the cluster with --allow-even-control-plane or set the annotation "
    'pykops.io/allow-even-control-plane: "true" on the Cluster'
)
# bad_inputs/cluster.yaml with two control-plane groups (a, b) and two-member etcd clusters.
TWO_CONTROL_PLANE = {
    "master-eu-west-1c": DELETE,
    "new.k8s.local:spec.etcdClusters[0].etcdMembers[2]": DELETE,
    "new.k8s.local:spec.etcdClusters[1].etcdMembers[2]": DELETE,
}

CASES = [
    # --- create cluster: the cluster name -----------------------------------------------------------------
    pytest.param(
        [*CREATE, "--name", "Upper.k8s.local", *ZONE], 1, "(use lower case)", None, id="name-upper-case"
    ),
    pytest.param(
        [*CREATE, "--name", "nodot", *ZONE], 1, "invalid cluster name 'nodot'", None, id="name-no-dot"
    ),
    pytest.param(
        [*CREATE, "--name", "under_score.k8s.local", *ZONE],
        1,
        "invalid cluster name 'under_score.k8s.local': it must be a fully-qualified DNS name",
        None,
        id="name-underscore",
    ),
    pytest.param(
        [*CREATE, "--name", "a" * 64 + ".k8s.local", *ZONE],
        1,
        "each dot-separated part must be at most 63 characters",
        None,
        id="name-label-too-long",
    ),
    pytest.param([*CREATE, "--name", "", *ZONE], 2, "no cluster name: pass --name", None, id="name-empty"),
    pytest.param(
        [*CREATE, *ZONE], 2, "no cluster name: pass --name or set KOPS_CLUSTER_NAME", None, id="name-missing"
    ),
    # --- create cluster: zones ----------------------------------------------------------------------------
    pytest.param(
        [*CREATE, "--name", "new.k8s.local", "--zones", "eu-west-1a,us-east-1a"],
        2,
        "are in different regions (eu-west-1, us-east-1); a cluster lives in one region",
        None,
        id="zones-different-regions",
    ),
    pytest.param(
        [*CREATE, "--name", "new.k8s.local", "--zones", "eu-west-1z"],
        2,
        "unknown zone 'eu-west-1z': region eu-west-1 has zones eu-west-1a, eu-west-1b, eu-west-1c",
        None,
        id="zone-unknown",
    ),
    pytest.param(
        [*CREATE, "--name", "new.k8s.local", "--zones", "xx-nowhere-1a"],
        2,
        "xx-nowhere-1 is not an AWS region pykops knows",
        None,
        id="zone-in-unknown-region",
    ),
    pytest.param(
        [*CREATE, "--name", "new.k8s.local", "--zones", "euwest1a"],
        2,
        "invalid zone 'euwest1a': expected an availability zone name such as eu-west-1a",
        None,
        id="zone-malformed",
    ),
    pytest.param(
        [*CREATE, "--name", "new.k8s.local", "--zones", "eu-west-1a,eu-west-1b", "--zones", "eu-west-1a"],
        2,
        "--zones: zone eu-west-1a is listed twice",
        None,
        id="zones-duplicate",
    ),
    pytest.param([*CREATE, "--name", "new.k8s.local"], 2, "--zones is required", None, id="zones-missing"),
    pytest.param(
        [
            *CREATE,
            "--name",
            "new.k8s.local",
            "--zones",
            "eu-west-1a,eu-west-1b",
            "--control-plane-zones",
            "eu-west-1c",
        ],
        2,
        "eu-west-1c not in --zones; control-plane zones must be a subset of --zones",
        None,
        id="control-plane-zones-not-in-zones",
    ),
    pytest.param(
        [*NEW, "--control-plane-zones", "eu-west-1a,us-east-1a"],
        2,
        "--control-plane-zones: zones eu-west-1a and us-east-1a are in different regions",
        None,
        id="control-plane-zones-different-regions",
    ),
    # --- create cluster: counts ---------------------------------------------------------------------------
    pytest.param(
        [
            *CREATE,
            "--name",
            "new.k8s.local",
            "--zones",
            "eu-west-1a,eu-west-1b",
            "--control-plane-count",
            "2",
        ],
        1,
        ("the number of control-plane nodes is 2, an even number", "Use 3 (or 1)", End(EVEN_HINT)),
        None,
        id="control-plane-count-2",
    ),
    pytest.param(
        [
            *CREATE,
            "--name",
            "new.k8s.local",
            "--zones",
            "eu-west-1a,eu-west-1b",
            "--control-plane-count",
            "4",
        ],
        1,
        (
            "the number of control-plane nodes is 4, an even number: etcd commits a write only when a "
            "majority (3 of 4) agrees",
            "Use 5 (or 3)",
            End(EVEN_HINT),
        ),
        None,
        id="control-plane-count-4",
    ),
    pytest.param(
        [
            *CREATE,
            "--name",
            "new.k8s.local",
            "--zones",
            "eu-west-1a,eu-west-1b,eu-west-1c",
            "--control-plane-zones",
            "eu-west-1a,eu-west-1b,eu-west-1c",
            "--control-plane-count",
            "1",
        ],
        2,
        "--control-plane-count 1 is less than the 3 --control-plane-zones",
        None,
        id="control-plane-count-below-zones",
    ),
    pytest.param(
        [*NEW, "--control-plane-count", "0"],
        2,
        "--control-plane-count 0: a cluster needs at least one control-plane node",
        None,
        id="control-plane-count-0",
    ),
    pytest.param(
        [*NEW, "--node-count", "-1"],
        2,
        "--node-count -1: must be zero or more",
        None,
        id="node-count-negative",
    ),
    pytest.param(
        [*NEW, "--node-count", "abc"],
        2,
        (
            "Error: Invalid value for '--node-count': 'abc' is not a valid integer. "
            "(see pykops create cluster --help)"
        ),
        None,
        id="node-count-not-a-number",
    ),
    # --- create cluster: networking, authorization, topology, DNS -----------------------------------------
    pytest.param(
        [*NEW, "--networking", "foo"],
        2,
        (
            End(
                "--networking foo: unknown network plugin; supported: kubenet, cilium, calico, flannel, "
                "canal, amazonvpc, kube-router, kindnet, cni"
            ),
        ),
        None,
        id="networking-unknown",
    ),
    pytest.param(
        [*NEW, "--networking", "foo"],
        2,
        ("unknown network plugin; supported: ", Count("kube-router", 1), Not("kuberouter")),
        None,
        id="networking-unknown-lists-each-plugin-once",
    ),
    pytest.param(
        [*NEW, "--networking", "weave"],
        2,
        "weave networking was removed from kops (Weave Net is no longer maintained); use cilium, calico",
        None,
        id="networking-removed-weave",
    ),
    pytest.param(
        [*NEW, "--networking", "romana"],
        2,
        "romana networking was removed from kops",
        None,
        id="networking-removed-romana",
    ),
    pytest.param(
        [*NEW, "--networking", "kopeio-vxlan"],
        2,
        "kopeio-vxlan networking was removed from kops; use cilium, calico, flannel or kubenet instead",
        None,
        id="networking-removed-kopeio-vxlan",
    ),
    pytest.param(
        [*NEW, "--networking", "classic"],
        2,
        "classic networking was removed from Kubernetes and kops",
        None,
        id="networking-removed-classic",
    ),
    pytest.param(
        [*NEW, "--authorization", "ABAC"],
        2,
        "--authorization ABAC: expected one of AlwaysAllow, RBAC",
        None,
        id="authorization-unknown",
    ),
    pytest.param(
        [*NEW, "--topology", "hybrid"],
        2,
        "--topology hybrid: expected one of private, public",
        None,
        id="topology-unknown",
    ),
    pytest.param(
        [*NEW, "--dns", "foo"], 2, "--dns foo: expected one of None, Private, Public", None, id="dns-unknown"
    ),
    pytest.param(
        [*NEW, "--dns", "public"],
        2,
        "is a gossip cluster (.k8s.local) and uses no DNS; drop --dns",
        None,
        id="dns-public-with-gossip-name",
    ),
    pytest.param(
        [*NEW, "--api-loadbalancer-type", "external"],
        2,
        "--api-loadbalancer-type external: expected one of Internal, Public",
        None,
        id="api-loadbalancer-type-unknown",
    ),
    pytest.param(
        [*NEW, "--networking", "kubenet", "--topology", "private"],
        1,
        "kubenet cannot be used with private topology",
        None,
        id="kubenet-private-topology",
    ),
    pytest.param(
        [*NEW, "--networking", "kubenet", "--node-count", "60"],
        1,
        "a route table holds at most 50 routes, but the instance groups allow up to 61 nodes",
        None,
        id="kubenet-60-nodes",
    ),
    pytest.param(
        [*NEW, "--networking", "kindnet", "--node-count", "60"],
        1,
        ("kindnet on AWS needs one VPC route per node", "allow up to 61 nodes", "lower maxSize"),
        None,
        id="kindnet-60-nodes",
    ),
    pytest.param(
        [*NEW, "--ingress", "traefik"],
        2,
        "--ingress traefik: unknown ingress controller; supported: nginx",
        None,
        id="ingress-unknown",
    ),
    # --- create cluster: network --------------------------------------------------------------------------
    pytest.param(
        [*NEW, "--admin-access", "1.2.3.4/33"],
        1,
        "invalid CIDR '1.2.3.4/33'; give an address range such as 203.0.113.0/24",
        None,
        id="admin-access-bad-cidr",
    ),
    pytest.param(
        [*NEW, "--network-cidr", "10.0.0.0/33"],
        2,
        "--network-cidr: invalid CIDR '10.0.0.0/33'; expected an IPv4 CIDR such as 172.20.0.0/16",
        None,
        id="network-cidr-bad",
    ),
    pytest.param(
        [*NEW, "--network-cidr", "10.0.0.0/33"],
        2,
        ("--network-cidr: invalid CIDR '10.0.0.0/33'", Not("spec.networking.networkCIDR"), Not("spec.")),
        None,
        id="network-cidr-bad-field-path",
    ),
    pytest.param(
        [*NEW, "--network-cidr", "10.0.0.0/30"],
        1,
        "network CIDR 10.0.0.0/30 is too small",
        None,
        id="network-cidr-too-small",
    ),
    pytest.param(
        [*NEW, "--subnets", "subnet-12345678"],
        2,
        "--subnets needs --vpc: shared subnets live in an existing VPC",
        None,
        id="subnets-without-vpc",
    ),
    pytest.param(
        [
            *CREATE,
            "--name",
            "new.k8s.local",
            "--zones",
            "eu-west-1a,eu-west-1b",
            "--vpc",
            "vpc-12345678",
            "--subnets",
            "subnet-12345678",
        ],
        2,
        "--subnets gives 1 subnet ids for 2 zones; give one id per zone",
        None,
        id="subnets-count-mismatch",
    ),
    pytest.param(
        [*NEW, "--vpc", "vpc-12345678", "--subnets", "sub-1"],
        1,
        "invalid subnet id 'sub-1'; expected subnet- and hex digits",
        None,
        id="subnet-id-malformed",
    ),
    pytest.param(
        [*NEW, "--vpc", "my-vpc"],
        1,
        "invalid VPC id 'my-vpc'; expected vpc- and hex digits",
        None,
        id="vpc-id-malformed",
    ),
    pytest.param(
        [*NEW, "--utility-subnets", "subnet-12345678"],
        2,
        "--utility-subnets only applies to --topology private",
        None,
        id="utility-subnets-public-topology",
    ),
    pytest.param(
        [*NEW, "--bastion"], 2, "--bastion needs --topology private", None, id="bastion-with-public-topology"
    ),
    # --- create cluster: machines, versions, channel ------------------------------------------------------
    pytest.param(
        [*NEW, "--node-size", "t2.smal"],
        1,
        "unknown instance type 't2.smal'; did you mean t2.small",
        None,
        id="node-size-unknown",
    ),
    pytest.param(
        [*NEW, "--control-plane-size", "m9.huge"],
        1,
        "InstanceGroup \"master-eu-west-1a\": spec.machineType: unknown instance type 'm9.huge'",
        None,
        id="control-plane-size-unknown",
    ),
    pytest.param(
        [*NEW, "--kubernetes-version", "v1.8.4"],
        1,
        "Kubernetes version 1.8.4 is not supported: pykops supports 1.32 to 1.36",
        None,
        id="kubernetes-version-too-old",
    ),
    pytest.param(
        [*NEW, "--kubernetes-version", "abc"],
        1,
        "invalid Kubernetes version 'abc': expected MAJOR.MINOR.PATCH",
        None,
        id="kubernetes-version-malformed",
    ),
    pytest.param(
        [*NEW, "--channel", "nightly"],
        1,
        "unknown channel 'nightly': known channels are stable",
        None,
        id="channel-unknown",
    ),
    # --- create cluster: output, apply, keys, labels, state -----------------------------------------------
    pytest.param(
        [*NEW, "--dry-run"], 2, "--dry-run needs -o yaml or -o json", None, id="dry-run-without-output"
    ),
    pytest.param(
        [*NEW, "-o", "yaml"], 2, "-o is only used with --dry-run", None, id="output-without-dry-run"
    ),
    pytest.param(
        [*NEW, "--yes"],
        1,
        "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        None,
        id="yes-without-aws-credentials",
    ),
    pytest.param(
        [*NEW, "--ssh-public-key", "no-such-key.pub"],
        2,
        "--ssh-public-key no-such-key.pub: cannot read it (No such file or directory)",
        None,
        id="ssh-public-key-missing-file",
    ),
    pytest.param(
        [*NEW, "--ssh-public-key", "{key}"],
        2,
        "this is a private key; give the public key (.pub)",
        PRIVATE_KEY,
        id="ssh-public-key-is-private",
    ),
    pytest.param(
        [*NEW, "--ssh-public-key", "{key}"],
        2,
        "not an SSH public key; expected a line starting with ssh-ed25519 or ssh-rsa",
        "hello world\n",
        id="ssh-public-key-garbage",
    ),
    pytest.param(
        [*NEW, "--cloud-labels", "team"],
        2,
        "--cloud-labels 'team': expected key=value pairs separated by commas",
        None,
        id="cloud-labels-without-equals",
    ),
    pytest.param(
        [*NEW, "--cloud-labels", "=platform"],
        2,
        "expected key=value pairs",
        None,
        id="cloud-labels-empty-key",
    ),
    pytest.param(
        [NO_STATE, *NEW],
        2,
        "no state store: pass --state or set KOPS_STATE_STORE",
        None,
        id="state-store-missing",
    ),
    pytest.param(
        ["--state", "gs://x", *NEW],
        1,
        "unsupported state store scheme gs:// in 'gs://x'; supported: s3://..., file://..., memfs://...",
        None,
        id="state-store-unsupported-scheme",
    ),
    pytest.param(
        ["--state", "relative/dir", *NAME, "get", "ig"],
        1,
        "has no scheme; supported state stores are s3://..., file://..., memfs://...",
        None,
        id="state-store-without-scheme",
    ),
    pytest.param(
        [
            *CREATE,
            *NAME,
            "--zones",
            "eu-west-1a,eu-west-1b,eu-west-1c",
            "--control-plane-count",
            "3",
            "--networking",
            "kubenet",
        ],
        1,
        "cluster existing.k8s.local already exists in state store",
        None,
        id="create-cluster-existing-name",
    ),
    # --- create -f: the file itself -----------------------------------------------------------------------
    pytest.param(
        ["create", "-f", "no-such.yaml"], 2, "-f no-such.yaml: no such file", None, id="file-missing"
    ),
    pytest.param(
        [*CREATE_FILE, "cluster"], 2, "-f cannot be combined with a subcommand", "", id="file-with-subcommand"
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'Cluster "new.k8s.local": spec.subnets[0].typo: unknown field',
        {"new.k8s.local:spec.subnets[0].typo": "x"},
        id="file-unknown-field",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'InstanceGroup "nodes": spec.subnetz: unknown field',
        {"nodes:spec.subnetz": ["eu-west-1a"]},
        id="file-ig-unknown-field",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'Cluster "new.k8s.local": spec.ingressController.class: unknown field',
        {"new.k8s.local:spec.ingressController": {"provider": "nginx", "class": "nginx"}},
        id="file-ingress-controller-unknown-field",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.ingressController.provider: 'traefik' is not supported; supported: nginx",
        {"new.k8s.local:spec.ingressController": {"provider": "traefik"}},
        id="file-ingress-controller-unknown-provider",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        (
            "spec.kubeProxy.enabled: kube-router replaces kube-proxy",
            End("remove kubeProxy.enabled or set it to false"),
        ),
        {
            "new.k8s.local:spec.networking": {"kuberouter": {}},
            "new.k8s.local:spec.kubeProxy": {"enabled": True},
        },
        id="file-kube-router-with-kube-proxy",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "kindnet on AWS needs one VPC route per node and a route table holds at most 50 routes",
        {"new.k8s.local:spec.networking": {"kindnet": {}}, "nodes:spec.maxSize": 48},
        id="file-kindnet-over-50-routes",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "unsupported apiVersion 'kops.k8s.io/v1alpha3'; pykops reads kops.k8s.io/v1alpha2",
        {"new.k8s.local:apiVersion": "kops.k8s.io/v1alpha3"},
        id="file-wrong-apiversion",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "unsupported kind 'Clusters'; expected Cluster or InstanceGroup",
        {"new.k8s.local:kind": "Clusters"},
        id="file-wrong-kind",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "bad.yaml: line 5: invalid YAML",
        "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: new.k8s.local\n spec: [\n",
        id="file-invalid-yaml",
    ),
    pytest.param(CREATE_FILE, 1, "bad.yaml: no Cluster or InstanceGroup found", "", id="file-empty"),
    pytest.param(
        CREATE_FILE,
        1,
        "bad.yaml: expected a kops object (a mapping with apiVersion and kind)",
        "- a\n- b\n",
        id="file-not-a-mapping",
    ),
    pytest.param(
        CREATE_FILE,
        2,
        "a file may create one Cluster at a time",
        CLUSTER_DOC.format(name="a.k8s.local") + "---\n" + CLUSTER_DOC.format(name="b.k8s.local"),
        id="file-two-clusters",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "cluster existing.k8s.local already exists in state store",
        CLUSTER_DOC.format(name=EXISTING),
        id="file-cluster-exists",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "instance group nodes already exists in cluster existing.k8s.local",
        IG_DOC.format(name="nodes", cluster=EXISTING),
        id="file-ig-exists",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "cluster 'nosuch.k8s.local' not found in state store",
        IG_DOC.format(name="extra", cluster="nosuch.k8s.local"),
        id="file-ig-for-unknown-cluster",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'InstanceGroup "nodes" belongs to another cluster than new.k8s.local',
        {"nodes:metadata.labels": {"kops.k8s.io/cluster": "other.k8s.local"}},
        id="file-ig-of-another-cluster",
    ),
    # --- create -f: the cluster spec ----------------------------------------------------------------------
    pytest.param(
        CREATE_FILE,
        1,
        "spec.networking: weave networking was removed from kops",
        {"new.k8s.local:spec.networking": {"weave": {}}},
        id="file-removed-networking",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "only one network plugin may be set, found kubenet, calico",
        {"new.k8s.local:spec.networking.calico": {}},
        id="file-two-network-plugins",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.cloudProvider: invalid value 'gce': expected 'aws'",
        {"new.k8s.local:spec.cloudProvider": "gce"},
        id="file-cloud-provider-gce",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "Kubernetes version 1.8.4 is not supported",
        {"new.k8s.local:spec.kubernetesVersion": "1.8.4"},
        id="file-kubernetes-version-too-old",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.etcdClusters[0]: etcd cluster 'main' member count is 2, an even number",
        {"new.k8s.local:spec.etcdClusters[0].etcdMembers[2]": DELETE},
        id="file-even-etcd-members",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        (
            "member count is 2, an even number",
            Count("--allow-even-control-plane", 1),
            "create the cluster with --allow-even-control-plane",
            End(EVEN_HINT),
        ),
        {"new.k8s.local:spec.etcdClusters[0].etcdMembers[2]": DELETE},
        id="file-even-etcd-members-suggests-missing-flag",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        ("the number of control-plane nodes is 2, an even number", End(EVEN_HINT)),
        TWO_CONTROL_PLANE,
        id="file-two-control-plane-groups-without-annotation",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.etcdClusters[0].etcdMembers[0].instanceGroup: 'nodes' is not a control-plane instance group",
        {"new.k8s.local:spec.etcdClusters[0].etcdMembers[0].instanceGroup": "nodes"},
        id="file-etcd-member-on-node-group",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.etcdClusters: the 'events' etcd cluster is missing",
        {"new.k8s.local:spec.etcdClusters[1]": DELETE},
        id="file-etcd-events-missing",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.subnets[1].cidr: 172.20.0.0/18 overlaps subnet 'eu-west-1a' (172.20.0.0/18)",
        {"new.k8s.local:spec.subnets[1].cidr": "172.20.0.0/18"},
        id="file-subnet-cidrs-overlap",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.subnets[1].cidr: 10.0.0.0/18 is outside spec.networkCIDR 172.20.0.0/16",
        {"new.k8s.local:spec.subnets[1].cidr": "10.0.0.0/18"},
        id="file-subnet-cidr-outside-network",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.subnets[1].zone: us-east-1b is in us-east-1 but other subnets are in eu-west-1",
        {"new.k8s.local:spec.subnets[1].zone": "us-east-1b"},
        id="file-subnets-in-two-regions",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "private topology needs Utility subnets",
        {"new.k8s.local:spec.subnets[0].type": "Private"},
        id="file-private-subnet-without-utility",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.serviceClusterIPRange 10.96.0.0/12 must be inside spec.nonMasqueradeCIDR 100.64.0.0/10",
        {"new.k8s.local:spec.serviceClusterIPRange": "10.96.0.0/12"},
        id="file-service-range-outside-non-masquerade",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.nonMasqueradeCIDR 100.64.0.0/10 overlaps spec.networkCIDR 100.64.0.0/16",
        {"new.k8s.local:spec.networkCIDR": "100.64.0.0/16"},
        id="file-network-overlaps-non-masquerade",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.kubernetesApiAccess[1]: invalid CIDR '1.2.3.4/99'",
        {"new.k8s.local:spec.kubernetesApiAccess": ["0.0.0.0/0", "1.2.3.4/99"]},
        id="file-bad-kubernetes-api-access",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.topology.dns.type: new.k8s.local is a gossip cluster (.k8s.local) and cannot use Public DNS",
        {"new.k8s.local:spec.topology.dns.type": "Public"},
        id="file-public-dns-with-gossip-name",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.rollingUpdate.maxSurge: invalid value '25 %'; expected a count such as 1 or a percentage",
        {"new.k8s.local:spec.rollingUpdate": {"maxSurge": "25 %"}},
        id="file-bad-cluster-max-surge",
    ),
    # --- create -f: the instance groups -------------------------------------------------------------------
    pytest.param(
        CREATE_FILE,
        1,
        "spec.subnets[0]: no cluster subnet named 'eu-west-1z' (subnets: eu-west-1a, eu-west-1b, eu-west-1c)",
        {"nodes:spec.subnets[0]": "eu-west-1z"},
        id="file-ig-unknown-subnet",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'InstanceGroup "nodes": spec.minSize 5 is larger than spec.maxSize 2',
        {"nodes:spec.minSize": 5},
        id="file-ig-min-above-max",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.minSize: invalid value -1",
        {"nodes:spec.minSize": -1},
        id="file-ig-negative-min-size",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "unknown instance type 't2.smal'; did you mean t2.small",
        {"nodes:spec.machineType": "t2.smal"},
        id="file-ig-unknown-machine-type",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.role: invalid value 'Worker': expected 'Master', 'ControlPlane', 'Node', 'Bastion' or",
        {"nodes:spec.role": "Worker"},
        id="file-ig-unknown-role",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'InstanceGroup "nodes": spec.role is required',
        {"nodes:spec.role": DELETE},
        id="file-ig-without-role",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.taints[0]: invalid taint 'dedicated'; expected key=value:Effect",
        {"nodes:spec.taints": ["dedicated"]},
        id="file-ig-bad-taint",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.rootVolumeType: unknown volume type 'ssd'; expected one of gp2, gp3",
        {"nodes:spec.rootVolumeType": "ssd"},
        id="file-ig-bad-root-volume-type",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        "spec.rollingUpdate.maxSurge: invalid value '150%'; expected a count such as 1 or a percentage",
        {"nodes:spec.rollingUpdate": {"maxSurge": "150%"}},
        id="file-ig-bad-max-surge",
    ),
    pytest.param(
        CREATE_FILE,
        1,
        'InstanceGroup "master-eu-west-1a": a control-plane group must stay in one zone',
        {"master-eu-west-1a:spec.subnets": ["eu-west-1a", "eu-west-1b"]},
        id="file-control-plane-ig-in-two-zones",
    ),
    # --- replace -f ---------------------------------------------------------------------------------------
    pytest.param(
        ["replace", "-f", "{yaml}"],
        1,
        "cluster new.k8s.local does not exist in file://",
        {},
        id="replace-missing-cluster-without-force",
    ),
    pytest.param(
        ["replace", "-f", "{yaml}"],
        1,
        "instance group extra does not exist in cluster existing.k8s.local; use --force to create it",
        IG_DOC.format(name="extra", cluster=EXISTING),
        id="replace-missing-ig-without-force",
    ),
    # --- edit ig / edit cluster ---------------------------------------------------------------------------
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.minSize=x"],
        1,
        "--set spec.minSize=x: invalid value 'x'",
        None,
        id="edit-ig-min-size-not-a-number",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.minSize=x"],
        1,
        ("--set spec.minSize=x: invalid value 'x'", Count("spec.minSize", 1)),
        None,
        id="edit-ig-min-size-not-a-number-path-once",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.minSize=5"],
        1,
        'InstanceGroup "nodes": spec.minSize 5 is larger than spec.maxSize 3',
        None,
        id="edit-ig-min-size-above-max",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.nosuch=1"],
        1,
        "--set spec.nosuch=1: unknown field",
        None,
        id="edit-ig-unknown-field",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.nosuch=1"],
        1,
        ("--set spec.nosuch=1: unknown field", Count("spec.nosuch", 1)),
        None,
        id="edit-ig-unknown-field-path-once",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--unset", "spec.role"],
        1,
        'InstanceGroup "nodes": spec.role is required',
        None,
        id="edit-ig-unset-role",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "metadata.name=x"],
        2,
        "metadata.name cannot be changed; create a new object instead",
        None,
        id="edit-ig-rename",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.minSize"],
        2,
        "expected path=value, e.g. --set spec.minSize=3",
        None,
        id="edit-ig-set-without-value",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "foo.bar=1"],
        2,
        "invalid field path 'foo.bar': it must start with spec.",
        None,
        id="edit-ig-path-outside-spec",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--set", "spec.subnets[7]=eu-west-1a"],
        2,
        "spec.subnets[7]: index 7 is out of range",
        None,
        id="edit-ig-index-out-of-range",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nodes", "--unset", "spec.image"],
        2,
        "--unset spec.image: not set",
        None,
        id="edit-ig-unset-missing-field",
    ),
    pytest.param(
        [*NAME, "edit", "ig", "nosuch", "--set", "spec.minSize=1"],
        1,
        "instance group 'nosuch' not found in cluster existing.k8s.local (instance groups: master-eu-west-1a",
        None,
        id="edit-ig-unknown-group",
    ),
    pytest.param(
        [*NAME, "edit", "cluster", "--set", 'spec.networking={"calico": {}}'],
        1,
        "changing the network plugin of an existing cluster (kubenet → calico) is not supported",
        None,
        id="edit-cluster-change-network-plugin",
    ),
    pytest.param(
        [*NAME, "edit", "cluster", "--set", "spec.networking.calico={}"],
        1,
        (
            "--set spec.networking.calico={}: spec.networking: only one network plugin may be set, found "
            "kubenet, calico",
            Not("Input should be a valid dictionary"),
        ),
        None,
        id="edit-cluster-add-second-network-plugin",
    ),
    pytest.param(
        [*NAME, "edit", "cluster", "--set", "spec.kubernetesVersion=1.8.4"],
        1,
        "Kubernetes version 1.8.4 is not supported: pykops supports 1.32 to 1.36",
        None,
        id="edit-cluster-kubernetes-version-too-old",
    ),
    pytest.param(
        [*NAME, "edit", "cluster", "--set", "spec.networkCIDR=10.0.0.0/16"],
        1,
        "spec.subnets[0].cidr: 172.20.0.0/18 is outside spec.networkCIDR 10.0.0.0/16",
        None,
        id="edit-cluster-network-cidr-excludes-subnets",
    ),
    pytest.param(
        [*NAME, "edit", "cluster", "nosuch.k8s.local", "--set", "spec.channel=stable"],
        1,
        "cluster 'nosuch.k8s.local' not found in state store",
        None,
        id="edit-cluster-unknown",
    ),
    # --- delete / get -------------------------------------------------------------------------------------
    pytest.param(
        [*NAME, "delete", "ig", "nosuch", "--yes"],
        1,
        "instance group 'nosuch' not found in cluster existing.k8s.local",
        None,
        id="delete-ig-unknown",
    ),
    pytest.param(
        [*NAME, "delete", "ig", "master-eu-west-1a", "--yes"],
        1,
        "cannot delete instance group master-eu-west-1a: etcd members a (main), a (events) run on it",
        None,
        id="delete-ig-control-plane",
    ),
    pytest.param(
        [*NAME, "delete", "ig", "master-eu-west-1a", "--yes"],
        1,
        (
            "cannot delete instance group master-eu-west-1a: etcd members a (main), a (events) run on it",
            Not("--allow-even-control-plane"),
            Not("an even number"),
        ),
        None,
        id="delete-ig-control-plane-names-etcd-members",
    ),
    pytest.param(
        ["delete", "cluster", "nosuch.k8s.local", "--yes"],
        1,
        "cluster 'nosuch.k8s.local' not found in state store",
        None,
        id="delete-cluster-unknown",
    ),
    pytest.param(
        ["--name", "nosuch.k8s.local", "get", "ig"],
        1,
        "cluster 'nosuch.k8s.local' not found in state store file://",
        None,
        id="get-ig-unknown-cluster",
    ),
    pytest.param(
        [*NAME, "get", "ig", "nosuch"],
        1,
        "instance group 'nosuch' not found in cluster existing.k8s.local (instance groups: master-eu-west-1a",
        None,
        id="get-ig-unknown-group",
    ),
    pytest.param(["get", "ig"], 2, "no cluster name: pass --name", None, id="get-ig-without-name"),
    # --- create ig ----------------------------------------------------------------------------------------
    pytest.param(
        [*NAME, "create", "ig", "nodes"],
        1,
        "instance group nodes already exists in cluster existing.k8s.local; use pykops edit ig nodes",
        None,
        id="create-ig-existing-name",
    ),
    pytest.param(
        [*NAME, "create", "ig", "extra", "--subnet", "eu-west-1z"],
        1,
        "no cluster subnet named 'eu-west-1z' (subnets: eu-west-1a, eu-west-1b, eu-west-1c)",
        None,
        id="create-ig-unknown-subnet",
    ),
    pytest.param(
        [*NAME, "create", "ig", "Extra"],
        1,
        "invalid instance group name 'Extra': use lower-case letters",
        None,
        id="create-ig-upper-case-name",
    ),
    pytest.param(
        [*NAME, "create", "ig", "extra", "--min-size", "3", "--max-size", "1"],
        1,
        "spec.minSize 3 is larger than spec.maxSize 1",
        None,
        id="create-ig-min-above-max",
    ),
    pytest.param(
        [*NAME, "create", "ig", "extra", "--machine-type", "t2.smal"],
        1,
        "unknown instance type 't2.smal'; did you mean t2.small",
        None,
        id="create-ig-unknown-machine-type",
    ),
    pytest.param(
        [*NAME, "create", "ig", "bastions", "--role", "Bastion"],
        1,
        ('InstanceGroup "bastions": a bastion needs private topology', Not("spec.subnets is empty")),
        None,
        id="create-ig-bastion-public-topology",
    ),
    pytest.param(
        [*NAME, "create", "ig", "extra", "--role", "Worker"],
        2,
        (
            "Error: Invalid value for '--role': 'Worker' is not one of 'node', 'master', 'controlplane', "
            "'bastion', 'apiserver'. (see pykops create instancegroup --help)"
        ),
        None,
        id="create-ig-unknown-role",
    ),
    pytest.param(
        ["create"], 2, "nothing to create: give -f FILE or a subcommand", None, id="create-without-anything"
    ),
]

INPUT_FILES = {"{yaml}": "bad.yaml", "{key}": "id_bad"}


def _tokens(path: str) -> list[str | int]:
    return [int(t) if t.isdigit() else t for t in re.findall(r"[^.\[\]]+", path)]


def broken_cluster_file(changes: dict[str, Any]) -> str:
    """bad_inputs/cluster.yaml with ``{"<object name>:<path>": value}`` applied (``DELETE`` removes).

    ``{"<object name>": DELETE}`` removes the whole object (document) from the file.
    """
    docs = list(yaml.safe_load_all(BASE_CLUSTER_FILE.read_text(encoding="utf-8")))
    by_name = {doc["metadata"]["name"]: doc for doc in docs}
    for where, value in changes.items():
        if ":" not in where:
            assert value is DELETE, f"{where}: only DELETE can be applied to a whole object"
            docs.remove(by_name.pop(where))
            continue
        name, path = where.split(":", 1)
        *parents, last = _tokens(path)
        node: Any = by_name[name]
        for token in parents:
            node = node[token]
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return yaml.safe_dump_all(docs, sort_keys=False)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory)."""
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A file:// state store holding existing.k8s.local; everything the test may touch lives in tmp_path."""
    for var in ("KOPS_STATE_STORE", "KOPS_CLUSTER_NAME", "KUBE_EDITOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EDITOR", "false")  # an edit that wrongly opens an editor fails instead of hanging
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no default ~/.ssh key, no stray writes elsewhere
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)  # `create cluster --yes` must find no credentials
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "admin.pub").write_text(PUBLIC_KEY, encoding="utf-8")
    url = f"file://{tmp_path / 'store'}"
    rc = main(
        [
            "--state",
            url,
            "create",
            "cluster",
            "--name",
            EXISTING,
            "--zones",
            "eu-west-1a,eu-west-1b,eu-west-1c",
            "--control-plane-count",
            "3",
            "--networking",
            "kubenet",
            "--ssh-public-key",
            str(tmp_path / "admin.pub"),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert (tmp_path / "store" / EXISTING / "config").is_file()
    assert list((tmp_path / "store" / EXISTING / "pki").rglob("*")), "the SSH public key was not stored"
    return url


@pytest.mark.parametrize(("argv", "code", "message", "content"), CASES)
def test_bad_input(
    argv: list[str],
    code: int,
    message: str | tuple[str | Not | Count | End, ...],
    content: str | dict[str, Any] | None,
    state: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = list(argv)
    for placeholder, filename in INPUT_FILES.items():
        if placeholder in args:
            assert content is not None, "a {yaml} or {key} case needs content"
            text = content if isinstance(content, str) else broken_cluster_file(content)
            (tmp_path / filename).write_text(text, encoding="utf-8")
            args = [filename if a == placeholder else a for a in args]
    if args[:1] == [NO_STATE]:
        args = args[1:]
    elif "--state" not in args:
        args = ["--state", state, *args]
    before = snapshot(tmp_path)

    rc = main(args)

    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    lines = [line for line in out.err.splitlines() if line.strip() and not line.startswith("Warning:")]
    assert len(lines) == 1, f"expected one error line on stderr, got:\n{out.err}"
    line = lines[0]
    assert line.startswith("Error: "), line
    for part in (message,) if isinstance(message, str) else message:
        if isinstance(part, Not):
            assert part.text not in line
        elif isinstance(part, Count):
            assert line.count(part.text) == part.times, f"{part.text!r} not {part.times} times in: {line}"
        elif isinstance(part, End):
            assert line.endswith(part.text), line
        else:
            assert part in line
    assert rc == code, line
    assert snapshot(tmp_path) == before, "the command changed files: the state store must be left untouched"


# --- what the even-count refusals point to is really accepted ---------------------------------------------


def test_even_control_plane_file_with_annotation_is_accepted(
    state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 control-plane groups, 2-member etcd clusters and the annotation on the Cluster: create -f works."""
    text = broken_cluster_file(
        {
            **TWO_CONTROL_PLANE,
            "new.k8s.local:metadata.annotations": {"pykops.io/allow-even-control-plane": "true"},
        }
    )
    (tmp_path / "even.yaml").write_text(text, encoding="utf-8")

    rc = main(["--state", state, "create", "-f", "even.yaml"])

    out = capsys.readouterr()
    assert "Error:" not in out.err
    assert rc == 0, out.err
    assert (tmp_path / "store" / "new.k8s.local" / "config").is_file()
    groups = sorted(p.name for p in (tmp_path / "store" / "new.k8s.local" / "instancegroup").iterdir())
    assert groups == ["master-eu-west-1a", "master-eu-west-1b", "nodes"]
    assert main(["--state", state, "get", "cluster", "new.k8s.local", "-o", "yaml"]) == 0
    stored = yaml.safe_load(capsys.readouterr().out)
    assert stored["metadata"]["annotations"]["pykops.io/allow-even-control-plane"] == "true"
    assert [len(etcd["etcdMembers"]) for etcd in stored["spec"]["etcdClusters"]] == [2, 2]


def test_allow_even_control_plane_is_recorded_for_later_edits(
    state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """create cluster --allow-even-control-plane records the override, so a later edit is not refused."""
    name = ["--name", "e.k8s.local"]
    created = main(
        [
            "--state",
            state,
            *CREATE,
            *name,
            "--zones",
            "eu-west-1a,eu-west-1b",
            "--control-plane-count",
            "2",
            "--allow-even-control-plane",
        ]
    )
    out = capsys.readouterr()
    assert created == 0, out.err
    assert (tmp_path / "store" / "e.k8s.local" / "config").is_file()

    rc = main(["--state", state, "edit", "ig", "nodes", "--set", "spec.maxSize=3", *name])

    out = capsys.readouterr()
    assert "Error:" not in out.err
    assert rc == 0, out.err
    assert main(["--state", state, "get", "ig", "nodes", *name, "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["maxSize"] == 3
