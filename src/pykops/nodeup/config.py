"""``NodeupConfig``: everything a machine of one instance group needs to bootstrap (pure).

``update cluster`` writes one per instance group to
``<cluster>/igconfig/<control-plane|node>/<group>/nodeupconfig.yaml`` in the state store; ``pykops nodeup``
reads it on the machine. It carries the completed Cluster and InstanceGroup (so the machine never has to
re-run the defaults), the API names, the keysets the role reads, the CA certificates it trusts, the pinned
downloads and the etcd members that this group's machines run. It holds no secrets: private keys stay in
the keystore, and ``caCertificates`` is refused if it holds anything but certificates.

Which keysets a machine reads (:func:`keysets_for`) follows kops' legacy "fetched, per role" design: the
control plane is trusted with the CAs and issues its own certificates; a worker node never reads a CA's
private key, only the leaf keysets ``kubelet`` and ``kube-proxy`` (client certificates issued once from
``kubernetes-ca`` by ``update cluster``), and it learns the CA certificates from ``caCertificates``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import yaml
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pykops.api import instance_types
from pykops.api.models import Cluster, InstanceGroup
from pykops.api.serialize import parse_object, to_dict
from pykops.errors import SpecError
from pykops.nodeup.assets import Arch, Asset, assets_for

if TYPE_CHECKING:
    from pykops.state.keystore import Keystore

API_VERSION: Literal["pykops.io/v1alpha1"] = "pykops.io/v1alpha1"
KIND: Literal["NodeupConfig"] = "NodeupConfig"

Role = Literal["ControlPlane", "Node", "APIServer", "Bastion"]

# Keysets (CAs, the service-account key, the nodes' leaf keypairs) in kOps' keystore naming.
KUBERNETES_CA = "kubernetes-ca"
SERVICE_ACCOUNT = "service-account"
AGGREGATOR_CA = "apiserver-aggregator-ca"
ETCD_CLIENTS_CA = "etcd-clients-ca"
KUBELET = "kubelet"
KUBE_PROXY = "kube-proxy"
# What a worker node reads from the keystore: client keypairs only, never a CA's private key.
NODE_KEYSETS = (KUBELET, KUBE_PROXY)


def etcd_peers_ca(etcd_cluster: str) -> str:
    return f"etcd-peers-ca-{etcd_cluster}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=_camel)


class EtcdMemberRef(_Model):
    """A member of an etcd cluster that machines of this instance group run."""

    name: str
    etcd_cluster: str


class NodeupConfig(_Model):
    api_version: Literal["pykops.io/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["NodeupConfig"] = KIND
    cluster_name: str
    config_base: str
    role: Role
    instance_group: str
    kubernetes_version: str
    architecture: Arch
    api_internal_name: str
    api_public_name: str
    # What machines that are not control-plane use to reach the API (the load balancer or a DNS name).
    api_endpoint: str
    keysets: list[str]
    # Keyset name → PEM bundle of its trusted certificates (public; oldest first, as kops' CA bundle).
    ca_certificates: dict[str, str] = Field(default_factory=dict)
    assets: list[Asset]
    etcd_members: list[EtcdMemberRef] = Field(default_factory=list)
    # The completed objects, as kOps YAML (apiVersion/kind/metadata/spec).
    cluster_spec: dict[str, Any]
    instance_group_spec: dict[str, Any]

    @field_validator("ca_certificates")
    @classmethod
    def _certificates_only(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return check_ca_certificates(value)
        except SpecError as exc:
            raise ValueError(str(exc)) from None

    @property
    def is_control_plane(self) -> bool:
        return self.role == "ControlPlane"

    def cluster(self) -> Cluster:
        obj = parse_object(self.cluster_spec, "nodeupconfig clusterSpec")
        if not isinstance(obj, Cluster):
            raise SpecError("nodeupconfig clusterSpec: expected a Cluster")
        return obj

    def group(self) -> InstanceGroup:
        obj = parse_object(self.instance_group_spec, "nodeupconfig instanceGroupSpec")
        if not isinstance(obj, InstanceGroup):
            raise SpecError("nodeupconfig instanceGroupSpec: expected an InstanceGroup")
        return obj

    def to_yaml(self) -> str:
        body = self.model_dump(by_alias=True, mode="json", exclude_none=False)
        return yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=1000)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<nodeupconfig>") -> NodeupConfig:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{source}: invalid YAML: {exc}") from None
        if not isinstance(data, dict) or data.get("kind") != KIND or data.get("apiVersion") != API_VERSION:
            raise SpecError(f"{source}: expected apiVersion {API_VERSION} kind {KIND}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SpecError(f"{source}: {where}: {first['msg']}") from None


def role_of(group: InstanceGroup) -> Role:
    role = group.spec.role or "Node"
    if role in ("Master", "ControlPlane"):
        return "ControlPlane"
    if role == "APIServer":
        return "APIServer"
    if role == "Bastion":
        return "Bastion"
    return "Node"


def architecture_of(group: InstanceGroup) -> Arch:
    info = instance_types.lookup(group.spec.machine_type or "")
    return "arm64" if info is not None and info.arch == "arm64" else "amd64"


def api_internal_name(cluster: Cluster) -> str:
    return cluster.spec.master_internal_name or f"api.internal.{cluster.name}"


def api_public_name(cluster: Cluster) -> str:
    api = cluster.spec.api
    return (api.public_name if api else None) or cluster.spec.master_public_name or f"api.{cluster.name}"


def endpoint_host(endpoint: str) -> str:
    """``https://api.example.com:443/`` or ``api.example.com`` → ``api.example.com``."""
    text = endpoint.strip()
    if "://" in text:
        text = urlparse(text).hostname or ""
    else:
        text = text.split("/", 1)[0]
        if text.count(":") == 1:
            text = text.split(":", 1)[0]
    return text.strip("[]")


def keysets_for(cluster: Cluster, role: Role) -> list[str]:
    """The keysets (with private keys) a machine of ``role`` reads from the keystore.

    The control plane (and a dedicated API server) reads the CAs and the service-account key and issues
    its own certificates; a worker node reads only its client keypairs (:data:`NODE_KEYSETS`).
    """
    if role == "Bastion":
        return []
    if role == "Node":
        return list(NODE_KEYSETS)
    names = [KUBERNETES_CA, SERVICE_ACCOUNT, AGGREGATOR_CA, ETCD_CLIENTS_CA]
    if role == "ControlPlane":
        names += [etcd_peers_ca(e.name) for e in cluster.spec.etcd_clusters or []]
    return names


def ca_keysets_for(cluster: Cluster, role: Role) -> list[str]:
    """The CAs whose certificates a machine of ``role`` trusts (public material only)."""
    if role == "Node":
        return [KUBERNETES_CA]
    return [name for name in keysets_for(cluster, role) if name != SERVICE_ACCOUNT]


def private_keysets_to_read(config: NodeupConfig) -> list[str]:
    """The keysets nodeup reads on a machine of ``config``: :attr:`NodeupConfig.keysets`, except that a
    worker node reads only :data:`NODE_KEYSETS` whatever an older config lists (those listed
    ``kubernetes-ca``)."""
    if config.role == "Node":
        return list(NODE_KEYSETS)
    return list(config.keysets)


def ca_certificates_for(
    keystore: Keystore, cluster: Cluster, group_or_role: InstanceGroup | Role
) -> dict[str, bytes]:
    """The CA certificates (keyset name → PEM bundle of its trusted items, oldest first) that machines of
    ``group_or_role`` need, read from ``keystore``; pass them to :func:`build_nodeup_config`.

    Raises NotFoundError for a missing keyset (``update cluster`` creates them first).
    """
    role = group_or_role if isinstance(group_or_role, str) else role_of(group_or_role)
    return {name: keystore.require(name).ca_bundle() for name in ca_keysets_for(cluster, role)}


def check_ca_certificates(certificates: Mapping[str, bytes | str], where: str = "") -> dict[str, str]:
    """``certificates`` as the NodeupConfig stores them (text), refused unless each is a PEM bundle of
    certificates and nothing else (a private key must never get into a NodeupConfig)."""
    out: dict[str, str] = {}
    prefix = f"{where}: " if where else ""
    for name, value in certificates.items():
        text = value.decode() if isinstance(value, bytes) else value
        if "PRIVATE KEY" in text:
            raise SpecError(f"{prefix}caCertificates.{name} holds a private key (certificates only)")
        try:
            certs = x509.load_pem_x509_certificates(text.encode())
        except ValueError:
            raise SpecError(f"{prefix}caCertificates.{name} is not a PEM certificate bundle") from None
        stripped = text
        for marker in ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"):
            stripped = stripped.replace(marker, "")
        if "-----BEGIN" in stripped:
            raise SpecError(f"{prefix}caCertificates.{name} holds something other than certificates")
        if not certs:
            raise SpecError(f"{prefix}caCertificates.{name} is empty")
        out[name] = text if text.endswith("\n") else text + "\n"
    return out


def etcd_members_of(cluster: Cluster, group: InstanceGroup) -> list[EtcdMemberRef]:
    return [
        EtcdMemberRef(name=member.name, etcd_cluster=etcd.name)
        for etcd in cluster.spec.etcd_clusters or []
        for member in etcd.etcd_members or []
        if member.instance_group == group.name
    ]


def build_nodeup_config(
    cluster: Cluster,
    group: InstanceGroup,
    *,
    api_endpoint: str,
    ca_certificates: Mapping[str, bytes] | None = None,
) -> NodeupConfig:
    """The bootstrap config of ``group``'s machines, from the completed (populated) cluster and group.

    ``api_endpoint`` is how machines that do not run the API server reach it: the API load balancer's DNS
    name, or a DNS name such as ``api.internal.<cluster>`` (a URL or a bare host; stored as a host).
    ``ca_certificates`` (keyset name → PEM bundle; see :func:`ca_certificates_for`) are stored as
    ``caCertificates``: certificates only, else SpecError. Without them a node falls back to reading the
    certificates from the keystore.
    """
    version = (cluster.spec.kubernetes_version or "").lstrip("v")
    if not version or not cluster.spec.config_base:
        raise SpecError(
            f"cluster {cluster.name}: build the nodeup config from the completed spec "
            "(kubernetesVersion and configBase must be set)"
        )
    role = role_of(group)
    arch = architecture_of(group)
    host = endpoint_host(api_endpoint)
    if not host:
        raise SpecError(f"invalid API endpoint {api_endpoint!r}: expected a host name or an https:// URL")
    return NodeupConfig(
        cluster_name=cluster.name,
        config_base=cluster.spec.config_base,
        role=role,
        instance_group=group.name,
        kubernetes_version=version,
        architecture=arch,
        api_internal_name=api_internal_name(cluster),
        api_public_name=api_public_name(cluster),
        api_endpoint=host,
        keysets=keysets_for(cluster, role),
        ca_certificates=check_ca_certificates(ca_certificates or {}, f"instance group {group.name}"),
        assets=[] if role == "Bastion" else assets_for(cluster, arch),
        etcd_members=etcd_members_of(cluster, group) if role == "ControlPlane" else [],
        cluster_spec=to_dict(cluster),
        instance_group_spec=to_dict(group),
    )
