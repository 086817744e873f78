"""What a machine's files are, given its NodeupConfig (pure: no I/O; keys are generated in memory).

:func:`render_machine` turns the completed spec of a cluster and of an instance group into the files of
one machine: containerd's configuration and unit, the kubelet's configuration, kubeconfig and unit, the
machine's certificates, and on the control plane the static pods (etcd main and events, kube-apiserver,
kube-controller-manager, kube-scheduler) and the add-on applier (:meth:`_Machine.addons_applier`); kube-proxy
runs on every machine unless ``spec.kubeProxy.enabled`` is false.

Certificates, per role (kOps' legacy "fetched" design, kops <= 1.18): the control plane is trusted with the
CAs and issues its own certificates here (a per-machine ``system:node:<name>`` kubelet identity, serving
certificates...). A worker node never holds a CA's private key: it is given the ``kubelet`` and
``kube-proxy`` keypairs (client certificates issued once by ``update cluster``) and the CA certificates of
its NodeupConfig (``caCertificates``). Its kubelet uses the shared identity ``kubelet`` (group
``system:nodes``), which the Node authorizer does not cover: the ``rbac.addons.k8s.io`` add-on
(``pykops/addons/data/rbac/kubelet-binding.yaml``) binds ClusterRole ``system:node`` to the user
``kubelet``, applied by the add-on applier that the control plane runs. A node's
kubelet serves with the self-signed certificate it makes itself (no ``tlsCertFile``, as in kOps before
kops-controller), which the API server accepts unless ``kubeAPIServer.kubeletCertificateAuthority`` is set.

The spec's component sections become flags through one generic mapping (:func:`component_flags`):
camelCase field → ``--kebab-case`` flag, booleans ``--x=true``, lists comma-joined, maps ``k=v,...``
sorted by key, nested sections flattened, flags sorted; a short table per component holds kOps' few
spellings that differ (``logLevel`` → ``--v``...) and the fields that are not flags (images, resources).
The kubelet reads most of its settings from a KubeletConfiguration file instead
(:func:`kubelet_configuration`).

kOps facts used (kubernetes/kops): flag spellings ``pkg/apis/kops/componentconfig.go`` and
``pkg/flagbuilder/build_flags.go``; static pods and certificates ``nodeup/pkg/model/kube_apiserver.go``,
``kube_controller_manager.go``, ``kube_scheduler.go``, ``kube_proxy.go``, ``kubelet.go``,
``etcd_manager_tls.go`` and their golden files under ``nodeup/pkg/model/tests/golden/minimal``; etcd ports
``pkg/wellknownports/wellknownports.go``; containerd ``nodeup/pkg/model/containerd.go``; certificate
lifetime (455 days plus up to 30 days of per-machine skew) ``upup/pkg/fi/nodeup/nodetasks/issue_cert.go``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import zlib
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from pydantic import BaseModel

from pykops.api.models import Cluster, InstanceGroup, KubeletConfig
from pykops.errors import PykopsError
from pykops.nodeup.config import (
    AGGREGATOR_CA,
    ETCD_CLIENTS_CA,
    KUBE_PROXY,
    KUBELET,
    KUBERNETES_CA,
    SERVICE_ACCOUNT,
    NodeupConfig,
    etcd_peers_ca,
)
from pykops.pki.ca import Keypair, PKIError, issue, load_certificate, load_keypair, public_key_pem
from pykops.pki.kubeconfig import build_kubeconfig

# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------


class FileSpec(NamedTuple):
    """One file of the machine: absolute path, content, permission bits, owner (``None``: root)."""

    path: str
    content: bytes
    mode: int
    owner: str | None = None


# keyset name → (certificate PEM, private key PEM) of its primary item.
Pki = Mapping[str, tuple[bytes, bytes]]
# keyset name → PEM bundle of its trusted certificates (public).
CaCertificates = Mapping[str, bytes]


class RenderError(PykopsError):
    """The machine cannot be rendered from this config (missing keyset, unsupported role...)."""


PUBLIC = 0o644
PRIVATE = 0o600
EXECUTABLE = 0o755

MANIFESTS_DIR = "/etc/kubernetes/manifests"
# The add-on applier on control-plane machines: `pykops addons apply` from the release bootstrap unpacked,
# against the local API, as a dedicated user in system:masters, reading the channel from the state store.
PYKOPS_LIB = "/opt/pykops/lib"
PYKOPS_CLI = "/opt/pykops/bin/pykops"
ADDONS_USER = "system:pykops-addons"
ADDONS_GROUP = "system:masters"
ADDONS_KUBECONFIG = "/var/lib/pykops-addons/kubeconfig"
ADDONS_SERVICE = "/etc/systemd/system/pykops-addons.service"
ADDONS_TIMER = "/etc/systemd/system/pykops-addons.timer"
SRV = "/srv/kubernetes"
CA_CRT = f"{SRV}/ca.crt"
KUBELET_CONFIG = "/var/lib/kubelet/kubelet-config.yaml"
KUBELET_KUBECONFIG = "/var/lib/kubelet/kubeconfig"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
LOCAL_API = "https://127.0.0.1"

# kOps issues machine certificates for 455 days plus up to 30 days, skewed per machine so that machines
# created together do not all renew together.
CERT_VALIDITY = timedelta(days=455)
CERT_SKEW_HOURS = 30 * 24

# etcd clusters: (peer port, client port, metrics port) as kOps (wellknownports.go).
ETCD_PORTS: dict[str, tuple[int, int, int]] = {
    "main": (2380, 4001, 2382),
    "events": (2381, 4002, 2384),
}
# The mirror pods of the etcd static pods read etcd-server-<node> and etcd-server-events-<node>.
ETCD_POD_NAMES = {"main": "etcd-server", "events": "etcd-server-events"}

PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
REGISTRY = "registry.k8s.io"

# ---------------------------------------------------------------------------------------------------------
# Generic mapping: component section → flags
# ---------------------------------------------------------------------------------------------------------

FlagValue = str | list[str]  # a list is a repeated flag: --x=a --x=b

_TOKEN = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")

# Fields that never become flags, in every component: the pod's image and resources, env, on/off switches.
NOT_FLAGS: dict[str, None] = {
    "image": None,
    "cpuRequest": None,
    "cpuLimit": None,
    "memoryRequest": None,
    "memoryLimit": None,
    "env": None,
    "enabled": None,
}
# kOps' flag spellings that differ from the kebab-case of the field (componentconfig.go `flag:` tags).
COMMON_RENAMES: dict[str, str | None] = {
    **NOT_FLAGS,
    "logLevel": "v",
    "logFormat": "logging-format",
    "enableProfiling": "profiling",
    "enableContentionProfiling": "contention-profiling",
    "kubeAPIQPS": "kube-api-qps",
    "kubeAPIBurst": "kube-api-burst",
    "leaderElectRenewDeadlineDuration": "leader-elect-renew-deadline",
}
API_SERVER_RENAMES: dict[str, str | None] = {
    **COMMON_RENAMES,
    "appendAdmissionPlugins": None,  # merged into --enable-admission-plugins
    "additionalServiceAccountIssuers": None,  # more --service-account-issuer flags
    "authenticationConfigFile": "authentication-config",
    "auditLogMaxAge": "audit-log-maxage",
    "auditLogMaxBackups": "audit-log-maxbackup",
    "auditLogMaxSize": "audit-log-maxsize",
    "requestheaderExtraHeaderPrefixes": "requestheader-extra-headers-prefix",
    "serviceAccountJWKSURI": "service-account-jwks-uri",
}
API_SERVER_REPEATED = ("oidc-required-claim", "service-account-key-file", "service-account-issuer")
CONTROLLER_MANAGER_RENAMES: dict[str, str | None] = {
    **COMMON_RENAMES,
    "concurrentHorizontalPodAustoscalerSyncs": "concurrent-horizontal-pod-autoscaler-syncs",
    "endpointSliceUpdatesBatchPeriod": "endpointslice-updates-batch-period",
}
SCHEDULER_RENAMES: dict[str, str | None] = {
    **COMMON_RENAMES,
    # Client settings live in the scheduler's configuration file (see scheduler_configuration).
    "kubeAPIQPS": None,
    "kubeAPIBurst": None,
    "qps": None,
    "burst": None,
    "usePolicyConfigMap": None,
    "maxPersistentVolumes": None,
}
PROXY_RENAMES: dict[str, str | None] = {**COMMON_RENAMES, "nodePortAddresses": "nodeport-addresses"}


def kebab(name: str) -> str:
    """A field name as a flag name: ``allocateNodeCIDRs`` → ``allocate-node-cidrs``.

    Acronyms stay whole (``rootCAFile`` → ``root-ca-file``), also plural (``ipvsExcludeCIDRs``).
    """
    return "-".join(t.lower() for t in _TOKEN.findall(name))


def _flag_text(value: Any, where: str) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value or None
    raise RenderError(f"{where}: cannot turn a {type(value).__name__} into a flag")


def component_flags(
    section: BaseModel | None,
    *,
    renames: Mapping[str, str | None] = COMMON_RENAMES,
    repeated: Collection[str] = (),
) -> dict[str, FlagValue]:
    """The flags a spec section stands for, by flag name (without ``--``); unset fields give none.

    ``renames`` maps a field's YAML name to its flag name, or to ``None`` for a field that is not a flag;
    other fields use :func:`kebab`. Flags named in ``repeated`` are given once per list item.
    """
    out: dict[str, FlagValue] = {}
    if section is None:
        return out
    # Matched case-insensitively: the spec's models spell a few acronyms differently from kOps
    # (``clientCaFile`` for kOps' ``clientCAFile``).
    lowered = {k.lower(): v for k, v in renames.items()}
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if value is None:
            continue
        field = info.alias or name
        if isinstance(value, BaseModel):
            out.update(component_flags(value, renames=renames, repeated=repeated))
            continue
        flag = lowered[field.lower()] if field.lower() in lowered else kebab(field)
        if flag is None:
            continue
        where = f"{type(section).__name__}.{field}"
        if isinstance(value, dict):
            if value:
                out[flag] = ",".join(f"{k}={_flag_text(value[k], where)}" for k in sorted(value))
        elif isinstance(value, list):
            items = [t for t in (_flag_text(v, where) for v in value) if t is not None]
            if items:
                out[flag] = items if flag in repeated else ",".join(items)
        else:
            text = _flag_text(value, where)
            if text is not None:
                out[flag] = text
    return out


def format_flags(flags: Mapping[str, FlagValue]) -> list[str]:
    """``{"v": "2", "a": ["x", "y"]}`` → ``["--a=x", "--a=y", "--v=2"]`` (sorted, as kOps sorts them)."""
    out: list[str] = []
    for name, value in flags.items():
        for item in value if isinstance(value, list) else [value]:
            out.append(f"--{name}={item}")
    return sorted(out)


# ---------------------------------------------------------------------------------------------------------
# The kubelet: its configuration file and its few remaining flags
# ---------------------------------------------------------------------------------------------------------


def _split(value: str) -> list[str]:
    return [p.strip() for p in str(value).split(",") if p.strip()]


def _key_values(separator: str) -> Callable[[Any], dict[str, str]]:
    def parse(value: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in _split(value):
            key, sep, val = part.partition(separator)
            if not sep:
                raise RenderError(f"expected key{separator}value, got {part!r}")
            out[key.strip()] = val.strip()
        return out

    return parse


def _feature_gates(value: Any) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for key, raw in dict(value).items():
        text = str(raw).strip().lower()
        if text not in ("true", "false"):
            raise RenderError(f"kubelet featureGates.{key}: expected true or false, got {raw!r}")
        out[str(key)] = text == "true"
    return out


def _taints(value: Any) -> list[dict[str, str]]:
    """``key=value:Effect`` or ``key:Effect`` → KubeletConfiguration registerWithTaints entries."""
    out: list[dict[str, str]] = []
    for taint in value:
        head, sep, effect = str(taint).rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise RenderError(
                f"invalid taint {taint!r}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
            )
        key, _, val = head.partition("=")
        entry = {"key": key, "effect": effect}
        if val:
            entry["value"] = val
        out.append(entry)
    return out


def _dns_list(value: Any) -> list[str]:
    return _split(value)


# KubeletConfig field → (path in KubeletConfiguration, converter). kOps: nodeup/pkg/model/kubelet.go.
KUBELET_CONFIG_FIELDS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "allowedUnsafeSysctls": ("allowedUnsafeSysctls", None),
    "anonymousAuth": ("authentication.anonymous.enabled", None),
    "authenticationTokenWebhook": ("authentication.webhook.enabled", None),
    "authenticationTokenWebhookCacheTTL": ("authentication.webhook.cacheTTL", None),
    "clientCAFile": ("authentication.x509.clientCAFile", None),
    "authorizationMode": ("authorization.mode", None),
    "cgroupDriver": ("cgroupDriver", None),
    "cgroupRoot": ("cgroupRoot", None),
    "clusterDNS": ("clusterDNS", _dns_list),
    "clusterDomain": ("clusterDomain", None),
    "containerLogMaxFiles": ("containerLogMaxFiles", None),
    "containerLogMaxSize": ("containerLogMaxSize", None),
    "cpuCFSQuota": ("cpuCFSQuota", None),
    "cpuCFSQuotaPeriod": ("cpuCFSQuotaPeriod", None),
    "cpuManagerPolicy": ("cpuManagerPolicy", None),
    "enableDebuggingHandlers": ("enableDebuggingHandlers", None),
    "enforceNodeAllocatable": ("enforceNodeAllocatable", _split),
    "eventBurst": ("eventBurst", None),
    "eventQPS": ("eventRecordQPS", None),
    "eventRecordQPS": ("eventRecordQPS", None),
    "evictionHard": ("evictionHard", _key_values("<")),
    "evictionMaxPodGracePeriod": ("evictionMaxPodGracePeriod", None),
    "evictionMinimumReclaim": ("evictionMinimumReclaim", _key_values("=")),
    "evictionPressureTransitionPeriod": ("evictionPressureTransitionPeriod", None),
    "evictionSoft": ("evictionSoft", _key_values("<")),
    "evictionSoftGracePeriod": ("evictionSoftGracePeriod", _key_values("=")),
    "failSwapOn": ("failSwapOn", None),
    "featureGates": ("featureGates", _feature_gates),
    "imageGCHighThresholdPercent": ("imageGCHighThresholdPercent", None),
    "imageGCLowThresholdPercent": ("imageGCLowThresholdPercent", None),
    "imageMaximumGCAge": ("imageMaximumGCAge", None),
    "imageMinimumGCAge": ("imageMinimumGCAge", None),
    "kernelMemcgNotification": ("kernelMemcgNotification", None),
    "kubeAPIQPS": ("kubeAPIQPS", None),
    "kubeReserved": ("kubeReserved", None),
    "kubeReservedCgroup": ("kubeReservedCgroup", None),
    "kubeletCgroups": ("kubeletCgroups", None),
    "logFormat": ("logging.format", None),
    "maxParallelImagePulls": ("maxParallelImagePulls", None),
    "maxPods": ("maxPods", None),
    "memorySwapBehavior": ("memorySwap.swapBehavior", None),
    "nodeLeaseDurationSeconds": ("nodeLeaseDurationSeconds", None),
    "nodeStatusUpdateFrequency": ("nodeStatusUpdateFrequency", None),
    "podManifestPath": ("staticPodPath", None),
    "podPidsLimit": ("podPidsLimit", None),
    "protectKernelDefaults": ("protectKernelDefaults", None),
    "readOnlyPort": ("readOnlyPort", None),
    "registerNode": ("registerNode", None),
    "registryBurst": ("registryBurst", None),
    "registryPullQPS": ("registryPullQPS", None),
    "resolvConf": ("resolvConf", None),
    "rotateCertificates": ("rotateCertificates", None),
    "runtimeRequestTimeout": ("runtimeRequestTimeout", None),
    "seccompDefault": ("seccompDefault", None),
    "serializeImagePulls": ("serializeImagePulls", None),
    "shutdownGracePeriod": ("shutdownGracePeriod", None),
    "shutdownGracePeriodCriticalPods": ("shutdownGracePeriodCriticalPods", None),
    "streamingConnectionIdleTimeout": ("streamingConnectionIdleTimeout", None),
    "systemCgroups": ("systemCgroups", None),
    "systemReserved": ("systemReserved", None),
    "systemReservedCgroup": ("systemReservedCgroup", None),
    "taints": ("registerWithTaints", _taints),
    "tlsCertFile": ("tlsCertFile", None),
    "tlsCipherSuites": ("tlsCipherSuites", None),
    "tlsMinVersion": ("tlsMinVersion", None),
    "tlsPrivateKeyFile": ("tlsPrivateKeyFile", None),
    "topologyManagerPolicy": ("topologyManagerPolicy", None),
    "volumePluginDirectory": ("volumePluginDir", None),
    "volumeStatsAggPeriod": ("volumeStatsAggPeriod", None),
}
# KubeletConfig fields that stay command-line flags (through component_flags).
KUBELET_FLAG_FIELDS = frozenset(
    {
        "cloudProvider",
        "hostnameOverride",
        "housekeepingInterval",
        "logLevel",
        "nodeLabels",
        "registerSchedulable",
        "rootDir",
        "runtimeCgroups",
    }
)
# KubeletConfig fields nodeup does not pass to the kubelet, and why.
KUBELET_IGNORED: dict[str, str] = {
    "nonMasqueradeCIDR": "the kubelet flag was removed with kubenet's in-kubelet implementation",
    "imagePullProgressDeadline": "removed from the kubelet with dockershim",
    "enableCadvisorJsonEndpoints": "removed from the kubelet in Kubernetes 1.21",
    "podInfraContainerImage": "used as containerd's sandbox image (the kubelet flag is deprecated)",
}


def merge_kubelet(*sections: KubeletConfig | None) -> KubeletConfig:
    """Later sections' set fields win (cluster → control-plane kubelet → instance group), as in kOps."""
    merged = KubeletConfig()
    for section in sections:
        if section is None:
            continue
        for name in type(section).model_fields:
            value = getattr(section, name)
            if value is not None:
                setattr(merged, name, value)
    return merged


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def kubelet_configuration(kubelet: KubeletConfig) -> dict[str, Any]:
    """The KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for a merged kubelet section."""
    doc: dict[str, Any] = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
    table = {k.lower(): v for k, v in KUBELET_CONFIG_FIELDS.items()}
    for name, info in KubeletConfig.model_fields.items():
        value = getattr(kubelet, name)
        field = info.alias or name
        if value is None or field.lower() not in table:
            continue
        path, convert = table[field.lower()]
        try:
            _set_path(doc, path, convert(value) if convert else value)
        except RenderError as exc:
            raise RenderError(f"kubelet {field}: {exc}") from None
    return doc


def kubelet_flags(kubelet: KubeletConfig) -> dict[str, FlagValue]:
    renames: dict[str, str | None] = {**COMMON_RENAMES}
    flag_fields = {f.lower() for f in KUBELET_FLAG_FIELDS}
    for name, info in KubeletConfig.model_fields.items():
        field = info.alias or name
        if field.lower() not in flag_fields:
            renames[field] = None
    return component_flags(kubelet, renames=renames)


# ---------------------------------------------------------------------------------------------------------
# Small writers
# ---------------------------------------------------------------------------------------------------------


def _yaml(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000).encode()


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise RenderError(f"cannot write a {type(value).__name__} to TOML")


def toml_dumps(tree: Mapping[str, Any], _path: tuple[str, ...] = ()) -> str:
    """A small TOML writer for nested tables of scalars and lists (containerd's config)."""
    lines: list[str] = []
    scalars = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in tree.items() if isinstance(v, Mapping)}
    if _path and (scalars or not tables):
        lines.append("[" + ".".join(_toml_key(p) for p in _path) + "]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + "\n\n" if lines else ""
    for key, value in tables.items():
        out += toml_dumps(value, (*_path, key))
    return out


def _unit(sections: list[tuple[str, list[tuple[str, str]]]]) -> bytes:
    parts = []
    for name, entries in sections:
        parts.append(f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in entries))
    return "\n".join(parts).encode()


def _exec(binary: str, args: list[str]) -> str:
    return " \\\n  ".join([binary, *args])


# ---------------------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------------------


def _certificates(bundle: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        raise RenderError("a CA certificate bundle is not PEM certificates") from None


def _issued_by_any(cert_pem: bytes, bundle: bytes) -> bool:
    cert = load_certificate(cert_pem)
    for ca in _certificates(bundle):
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _with_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


class _Certs:
    """The machine's certificates: issued here from the CAs it was given (``may_sign``, the control plane),
    or the fetched leaf keypairs of a worker node; every issued certificate has one lifetime.

    ``ca_certificates`` are the trusted CA bundles from the NodeupConfig; a CA the machine also holds (in
    ``pki``) is added to its bundle if missing (a CA rotated after the config was written).
    """

    def __init__(
        self, pki: Pki, validity: timedelta, *, ca_certificates: CaCertificates, may_sign: bool
    ) -> None:
        self.pki = pki
        self.validity = validity
        self.ca_certificates = ca_certificates
        self.may_sign = may_sign
        self._cas: dict[str, Keypair] = {}

    def ca(self, name: str) -> Keypair:
        if not self.may_sign:
            raise RenderError(f"internal error: a worker node never signs certificates (asked for {name})")
        if name not in self._cas:
            if name not in self.pki:
                raise RenderError(
                    f"keyset {name} is missing; this machine needs {name} (run pykops update cluster --yes "
                    "to create the cluster's keysets)"
                )
            cert, key = self.pki[name]
            self._cas[name] = load_keypair(cert, key)
        return self._cas[name]

    def ca_cert(self, name: str) -> bytes:
        """The PEM bundle a client or server trusts for ``name``."""
        bundle = _with_newline(self.ca_certificates[name]) if self.ca_certificates.get(name) else b""
        if self.may_sign and (name in self.pki or not bundle):
            own = _with_newline(self.ca(name).cert_pem)  # the missing-keyset error when it is not given
            if not bundle or load_certificate(own) not in _certificates(bundle):
                bundle += own
        if not bundle:
            raise RenderError(
                f"the {name} CA certificate is missing: the NodeupConfig has no caCertificates.{name} "
                "(re-run pykops update cluster --yes to rewrite it)"
            )
        return bundle

    def fetched(self, name: str, issuer: str = KUBERNETES_CA) -> Keypair:
        """A worker node's leaf keypair ``name`` (not issued here), checked against ``issuer``'s bundle."""
        if name not in self.pki:
            raise RenderError(
                f"keyset {name} is missing; this machine needs {name} (run pykops update cluster --yes "
                "to create the cluster's keysets)"
            )
        cert, key = self.pki[name]
        try:
            keypair = load_keypair(cert, key)
        except PKIError as exc:
            raise RenderError(f"keyset {name}: {exc}") from None
        if not _issued_by_any(keypair.cert_pem, self.ca_cert(issuer)):
            raise RenderError(
                f"keyset {name}: its certificate is not issued by a trusted {issuer} certificate "
                f"(after rotating {issuer}, reissue {name})"
            )
        return keypair

    def issue(
        self,
        ca: str,
        common_name: str,
        *,
        usage: str,
        organization: list[str] | None = None,
        dns_names: list[str] | None = None,
        ip_addresses: list[str] | None = None,
    ) -> Keypair:
        if usage not in ("server", "client", "both"):
            raise RenderError(f"unknown certificate usage {usage!r}")
        return issue(
            self.ca(ca),
            common_name=common_name,
            organization=organization or [],
            dns_names=dns_names or [],
            ip_addresses=ip_addresses or [],
            usage="server" if usage == "server" else "client" if usage == "client" else "both",
            validity=self.validity,
        )


def certificate_validity(instance_id: str) -> timedelta:
    """455 days plus a per-machine skew of up to 30 days (deterministic for one instance)."""
    return CERT_VALIDITY + timedelta(hours=zlib.crc32(instance_id.encode()) % CERT_SKEW_HOURS)


def _pair(directory: str, name: str, keypair: Keypair) -> list[FileSpec]:
    return [
        FileSpec(f"{directory}/{name}.crt", keypair.cert_pem, PUBLIC),
        FileSpec(f"{directory}/{name}.key", keypair.key_pem, PRIVATE),
    ]


def _kubeconfig(
    path: str,
    cluster: str,
    server: str,
    ca_pem: bytes,
    keypair: Keypair,
    user: str,
    tls_server_name: str | None,
) -> FileSpec:
    doc = build_kubeconfig(
        cluster,
        server,
        ca_pem,
        client_cert_pem=keypair.cert_pem,
        client_key_pem=keypair.key_pem,
        user=user,
        tls_server_name=tls_server_name,
    )
    return FileSpec(path, _yaml(doc), PRIVATE)


# ---------------------------------------------------------------------------------------------------------
# Static pods
# ---------------------------------------------------------------------------------------------------------


def _host_volume(
    name: str,
    host_path: str,
    mount_path: str | None = None,
    *,
    read_only: bool = True,
    type_: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    volume: dict[str, Any] = {"name": name, "hostPath": {"path": host_path}}
    if type_:
        volume["hostPath"]["type"] = type_
    mount: dict[str, Any] = {"name": name, "mountPath": mount_path or host_path}
    if read_only:
        mount["readOnly"] = True
    return volume, mount


def _resources(
    cpu: str | None, memory: str | None, cpu_limit: str | None = None, mem_limit: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", mem_limit)) if v}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def static_pod(
    name: str,
    *,
    image: str,
    command: list[str],
    args: list[str],
    volumes: list[tuple[dict[str, Any], dict[str, Any]]],
    priority_class: str = "system-cluster-critical",
    resources: dict[str, Any] | None = None,
    probe: dict[str, Any] | None = None,
    privileged: bool = False,
    env: list[dict[str, Any]] | None = None,
    ports: list[dict[str, Any]] | None = None,
    container_name: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": container_name or name,
        "image": image,
        "command": command,
        "args": args,
    }
    if env:
        container["env"] = env
    if ports:
        container["ports"] = ports
    if resources:
        container["resources"] = resources
    if probe:
        container["livenessProbe"] = probe
    if privileged:
        container["securityContext"] = {"privileged": True}
    container["volumeMounts"] = [mount for _, mount in volumes]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": name}},
        "spec": {
            "hostNetwork": True,
            "priorityClassName": priority_class,
            "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
            "containers": [container],
            "volumes": [volume for volume, _ in volumes],
        },
    }


def _probe(port: int, path: str = "/healthz", scheme: str = "HTTPS", *, delay: int = 15) -> dict[str, Any]:
    return {
        "httpGet": {"host": "127.0.0.1", "path": path, "port": port, "scheme": scheme},
        "initialDelaySeconds": delay,
        "timeoutSeconds": 15,
        "failureThreshold": 8,
    }


# ---------------------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------------------


def etcd_member_host(etcd_cluster: str, member: str, cluster_name: str) -> str:
    """kOps' member DNS names: ``etcd-<member>.internal.<cluster>``, ``etcd-events-<member>.internal...``."""
    prefix = "etcd" if etcd_cluster == "main" else f"etcd-{etcd_cluster}"
    return f"{prefix}-{member}.internal.{cluster_name}"


def etcd_data_dir(volume_id: str) -> str:
    """Where an etcd member's EBS volume is mounted: ``/mnt/master-vol-0abc...`` (etcd-manager's
    ``"/mnt/master-" + volume id``)."""
    return f"/mnt/master-{volume_id}"


class _Machine:
    def __init__(
        self,
        config: NodeupConfig,
        *,
        instance_id: str,
        zone: str,
        node_name: str,
        pki: Pki,
        etcd_volumes: Mapping[str, str],
        ca_certificates: CaCertificates,
    ) -> None:
        self.config = config
        self.cluster: Cluster = config.cluster()
        self.group: InstanceGroup = config.group()
        self.instance_id = instance_id
        self.zone = zone
        self.node_name = node_name
        self.etcd_volumes = etcd_volumes
        # A worker node never signs: it uses the fetched kubelet and kube-proxy keypairs.
        self.issues_own_certs = config.role != "Node"
        trusted = {name: pem.encode() for name, pem in config.ca_certificates.items()}
        trusted.update(ca_certificates)
        self.certs = _Certs(
            pki,
            certificate_validity(instance_id),
            ca_certificates=trusted,
            may_sign=self.issues_own_certs,
        )
        self.version = config.kubernetes_version
        self.name = config.cluster_name
        self.files: list[FileSpec] = []

    # -- helpers ----------------------------------------------------------------------------------------
    def add(self, *files: FileSpec) -> None:
        self.files.extend(files)

    def image(self, component: str, override: str | None) -> str:
        return override or f"{REGISTRY}/{component}:v{self.version}"

    @property
    def spec(self) -> Any:
        return self.cluster.spec

    @property
    def api_server_url(self) -> str:
        return LOCAL_API if self.config.is_control_plane else f"https://{self.config.api_endpoint}"

    @property
    def tls_server_name(self) -> str | None:
        return None if self.config.is_control_plane else self.config.api_internal_name

    def manifest(self, filename: str, pod: dict[str, Any]) -> None:
        self.add(FileSpec(f"{MANIFESTS_DIR}/{filename}", _yaml(pod), PUBLIC))

    # -- every machine ----------------------------------------------------------------------------------
    def render(self) -> list[FileSpec]:
        role = self.config.role
        if role == "Bastion":
            return []
        if role == "APIServer":
            raise RenderError(
                f"instance group {self.config.instance_group}: dedicated API server groups (role APIServer) "
                "are not supported by pykops nodeup yet"
            )
        self.add(FileSpec(CA_CRT, self.certs.ca_cert(KUBERNETES_CA), PUBLIC))
        self.system()
        self.containerd()
        self.kubelet()
        proxy = self.spec.kube_proxy
        if proxy is None or proxy.enabled is not False:
            self.kube_proxy()
        if self.config.is_control_plane:
            for etcd in self.spec.etcd_clusters or []:
                self.etcd(etcd)
            self.kube_apiserver()
            self.kube_controller_manager()
            self.kube_scheduler()
            self.addons_applier()
        paths = [f.path for f in self.files]
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise RenderError(f"internal error: files rendered twice: {', '.join(duplicates)}")
        return sorted(self.files, key=lambda f: f.path)

    def system(self) -> None:
        self.add(FileSpec("/etc/modules-load.d/pykops.conf", b"overlay\nbr_netfilter\n", PUBLIC))
        sysctls = [
            "net.bridge.bridge-nf-call-iptables=1",
            "net.bridge.bridge-nf-call-ip6tables=1",
            "net.ipv4.ip_forward=1",
            *(self.spec.sysctl_parameters or []),
            *(self.group.spec.sysctl_parameters or []),
        ]
        text = "# Kernel settings for Kubernetes, written by pykops nodeup.\n" + "".join(
            f"{s}\n" for s in sysctls
        )
        self.add(FileSpec("/etc/sysctl.d/99-pykops.conf", text.encode(), PUBLIC))

    def containerd(self) -> None:
        spec = self.spec.containerd
        group_spec = self.group.spec.containerd
        if group_spec is not None:
            spec = group_spec
        version = (spec.version if spec else None) or "1.7.28"
        kubelet = self.kubelet_section()
        sandbox = (spec.sandbox_image if spec else None) or kubelet.pod_infra_container_image or PAUSE_IMAGE
        systemd = (kubelet.cgroup_driver or "systemd") == "systemd"
        kubenet = self.spec.networking is not None and self.spec.networking.plugin() == "kubenet"
        mirrors = (spec.registry_mirrors if spec else None) or {}
        if spec is not None and spec.config_override:
            config_text = spec.config_override
        else:
            config_text = toml_dumps(
                containerd_config(
                    version,
                    sandbox_image=sandbox,
                    systemd_cgroup=systemd,
                    kubenet=kubenet,
                    mirrors=bool(mirrors),
                    root=spec.root if spec else None,
                    state=spec.state if spec else None,
                    address=spec.address if spec else None,
                    additions=(spec.config_additions if spec else None) or {},
                )
            )
        self.add(FileSpec("/etc/containerd/config.toml", config_text.encode(), PUBLIC))
        for registry, endpoints in sorted(mirrors.items()):
            server = "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
            hosts = f"server = {json.dumps(server)}\n" + "".join(
                f'\n[host.{json.dumps(e)}]\n  capabilities = ["pull", "resolve"]\n' for e in endpoints
            )
            name = "_default" if registry == "*" else registry
            self.add(FileSpec(f"/etc/containerd/certs.d/{name}/hosts.toml", hosts.encode(), PUBLIC))
        if kubenet:
            self.add(FileSpec("/etc/containerd/config-cni.template", KUBENET_CNI_TEMPLATE.encode(), PUBLIC))
            masq = self.spec.non_masquerade_cidr or "100.64.0.0/10"
            self.add(
                FileSpec("/opt/pykops/bin/cni-iptables-setup", _iptables_setup(masq).encode(), EXECUTABLE)
            )
            self.add(
                FileSpec(
                    "/etc/systemd/system/cni-iptables-setup.service",
                    _unit(
                        [
                            (
                                "Unit",
                                [
                                    ("Description", "Configure iptables for kubernetes CNI"),
                                    ("Before", "network.target"),
                                ],
                            ),
                            (
                                "Service",
                                [
                                    ("Type", "oneshot"),
                                    ("RemainAfterExit", "yes"),
                                    ("ExecStart", "/opt/pykops/bin/cni-iptables-setup"),
                                ],
                            ),
                            ("Install", [("WantedBy", "basic.target")]),
                        ]
                    ),
                    PUBLIC,
                )
            )
        socket = f"unix://{(spec.address if spec else None) or CONTAINERD_SOCKET}"
        self.add(FileSpec("/etc/crictl.yaml", f"runtime-endpoint: {socket}\n".encode(), PUBLIC))
        log_level = (spec.log_level if spec else None) or "info"
        self.add(
            FileSpec(
                "/etc/systemd/system/containerd.service",
                _unit(
                    [
                        (
                            "Unit",
                            [
                                ("Description", "containerd container runtime"),
                                ("Documentation", "https://containerd.io"),
                                ("After", "network.target local-fs.target"),
                            ],
                        ),
                        (
                            "Service",
                            [
                                ("ExecStartPre", "-/sbin/modprobe overlay"),
                                (
                                    "ExecStart",
                                    "/usr/bin/containerd -c /etc/containerd/config.toml "
                                    + f"--log-level={log_level}",
                                ),
                                ("Type", "notify"),
                                ("Delegate", "yes"),
                                ("KillMode", "process"),
                                ("Restart", "always"),
                                ("RestartSec", "5"),
                                ("LimitNPROC", "infinity"),
                                ("LimitCORE", "infinity"),
                                ("LimitNOFILE", "infinity"),
                                ("TasksMax", "infinity"),
                                ("OOMScoreAdjust", "-999"),
                            ],
                        ),
                        ("Install", [("WantedBy", "multi-user.target")]),
                    ]
                ),
                PUBLIC,
            )
        )

    def kubelet_section(self) -> KubeletConfig:
        control_plane = self.spec.control_plane_kubelet or self.spec.master_kubelet
        return merge_kubelet(
            self.spec.kubelet,
            control_plane if self.config.is_control_plane else None,
            self.group.spec.kubelet,
        )

    def kubelet(self) -> None:
        kubelet = self.kubelet_section()
        # Files nodeup writes win over paths in the spec; the control plane registers tainted (kOps).
        kubelet.client_ca_file = CA_CRT
        if self.issues_own_certs:
            kubelet.tls_cert_file = f"{SRV}/kubelet-server.crt"
            kubelet.tls_private_key_file = f"{SRV}/kubelet-server.key"
        # else a worker node's kubelet makes its own self-signed serving certificate (in its --cert-dir).
        if kubelet.pod_manifest_path is None:
            kubelet.pod_manifest_path = MANIFESTS_DIR
        if kubelet.authorization_mode is None:
            kubelet.authorization_mode = "Webhook"
        if kubelet.authentication_token_webhook is None:
            kubelet.authentication_token_webhook = True
        if kubelet.volume_plugin_directory is None:
            kubelet.volume_plugin_directory = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/"
        if kubelet.runtime_request_timeout is None:
            kubelet.runtime_request_timeout = "15m0s"
        if self.config.is_control_plane and kubelet.taints is None:
            kubelet.taints = ["node-role.kubernetes.io/control-plane:NoSchedule"]
        labels = dict(self.group.spec.node_labels or {})
        labels.update(kubelet.node_labels or {})
        labels["kops.k8s.io/instancegroup"] = self.group.name
        kubelet.node_labels = labels
        kubelet.hostname_override = self.node_name

        config = kubelet_configuration(kubelet)
        config["containerRuntimeEndpoint"] = (
            f"unix://{(self.spec.containerd.address if self.spec.containerd else None) or CONTAINERD_SOCKET}"
        )
        if "providerID" not in config:
            config["providerID"] = f"aws:///{self.zone}/{self.instance_id}"
        self.add(FileSpec(KUBELET_CONFIG, _yaml(config), PUBLIC))

        if self.issues_own_certs:
            client = self.certs.issue(
                KUBERNETES_CA, f"system:node:{self.node_name}", usage="client", organization=["system:nodes"]
            )
        else:
            client = self.certs.fetched(KUBELET)
        self.add(
            _kubeconfig(
                KUBELET_KUBECONFIG,
                self.name,
                self.api_server_url,
                self.certs.ca_cert(KUBERNETES_CA),
                client,
                "kubelet",
                self.tls_server_name,
            )
        )
        if self.issues_own_certs:
            names = [self.node_name] + ([self.instance_id] if self.instance_id != self.node_name else [])
            serving = self.certs.issue(KUBERNETES_CA, self.node_name, usage="server", dns_names=names)
            self.add(*_pair(SRV, "kubelet-server", serving))

        flags = kubelet_flags(kubelet)
        flags["config"] = KUBELET_CONFIG
        flags["kubeconfig"] = KUBELET_KUBECONFIG
        self.add(
            FileSpec(
                "/etc/systemd/system/kubelet.service",
                _unit(
                    [
                        (
                            "Unit",
                            [
                                ("Description", "Kubernetes Kubelet Server"),
                                ("Documentation", "https://github.com/kubernetes/kubernetes"),
                                ("After", "containerd.service"),
                                ("Wants", "containerd.service"),
                            ],
                        ),
                        (
                            "Service",
                            [
                                ("ExecStart", _exec("/usr/local/bin/kubelet", format_flags(flags))),
                                ("Restart", "always"),
                                ("RestartSec", "2s"),
                                ("StartLimitInterval", "0"),
                                ("KillMode", "process"),
                                ("CPUAccounting", "true"),
                                ("MemoryAccounting", "true"),
                            ],
                        ),
                        ("Install", [("WantedBy", "multi-user.target")]),
                    ]
                ),
                PUBLIC,
            )
        )

    def kube_proxy(self) -> None:
        proxy = self.spec.kube_proxy
        flags = component_flags(proxy, renames=PROXY_RENAMES)
        flags.setdefault("hostname-override", self.node_name)
        flags["kubeconfig"] = "/var/lib/kube-proxy/kubeconfig"
        if self.issues_own_certs:
            client = self.certs.issue(KUBERNETES_CA, "system:kube-proxy", usage="client")
        else:
            client = self.certs.fetched(KUBE_PROXY)
        self.add(
            _kubeconfig(
                "/var/lib/kube-proxy/kubeconfig",
                self.name,
                self.api_server_url,
                self.certs.ca_cert(KUBERNETES_CA),
                client,
                "kube-proxy",
                self.tls_server_name,
            )
        )
        pod = static_pod(
            "kube-proxy",
            image=self.image("kube-proxy", proxy.image if proxy else None),
            command=["/usr/local/bin/kube-proxy"],
            args=format_flags(flags),
            priority_class="system-node-critical",
            resources=_resources(
                (proxy.cpu_request if proxy else None) or "100m",
                proxy.memory_request if proxy else None,
                proxy.cpu_limit if proxy else None,
                proxy.memory_limit if proxy else None,
            ),
            privileged=True,
            volumes=[
                _host_volume("kubeconfig", "/var/lib/kube-proxy"),
                _host_volume("modules", "/lib/modules"),
                _host_volume("ssl-certs-hosts", "/usr/share/ca-certificates", "/etc/ssl/certs"),
                _host_volume("iptableslock", "/run/xtables.lock", read_only=False, type_="FileOrCreate"),
            ],
        )
        pod["metadata"]["labels"]["tier"] = "node"
        self.manifest("kube-proxy.yaml", pod)

    # -- control plane ----------------------------------------------------------------------------------
    def etcd(self, etcd: Any) -> None:
        name = etcd.name
        if name not in ETCD_PORTS:
            raise RenderError(f"etcd cluster {name!r}: pykops runs only the main and events etcd clusters")
        members = [m for m in self.config.etcd_members if m.etcd_cluster == name]
        if not members:
            return  # this group runs no member of this etcd cluster
        if len(members) > 1:
            raise RenderError(
                f"instance group {self.group.name} runs {len(members)} members of etcd-{name}; expected one"
            )
        member = members[0].name
        if name not in self.etcd_volumes:
            raise RenderError(
                f"no volume attached for etcd-{name} member {member}; attach the member's volume first "
                "(pykops nodeup does this on the control plane)"
            )
        peer_port, client_port, metrics_port = ETCD_PORTS[name]
        host = etcd_member_host(name, member, self.name)
        pki_dir = f"/etc/kubernetes/pki/etcd-{name}"
        clients_ca = ETCD_CLIENTS_CA
        peers_ca = etcd_peers_ca(name)
        server = self.certs.issue(
            clients_ca,
            f"etcd-{member}",
            usage="server",
            dns_names=[host, "localhost"],
            ip_addresses=["127.0.0.1"],
        )
        peer = self.certs.issue(peers_ca, f"etcd-{member}", usage="both", dns_names=[host])
        self.add(
            FileSpec(f"{pki_dir}/ca.crt", self.certs.ca_cert(clients_ca), PUBLIC),
            FileSpec(f"{pki_dir}/peers-ca.crt", self.certs.ca_cert(peers_ca), PUBLIC),
            *_pair(pki_dir, "server", server),
            *_pair(pki_dir, "peer", peer),
        )
        initial = ",".join(
            f"{m.name}=https://{etcd_member_host(name, m.name, self.name)}:{peer_port}"
            for m in etcd.etcd_members or []
        )
        data_dir = "/var/etcd/data"
        args = [
            f"--name={member}",
            f"--data-dir={data_dir}",
            f"--listen-peer-urls=https://0.0.0.0:{peer_port}",
            f"--initial-advertise-peer-urls=https://{host}:{peer_port}",
            f"--listen-client-urls=https://0.0.0.0:{client_port}",
            f"--advertise-client-urls=https://{host}:{client_port}",
            f"--listen-metrics-urls=http://127.0.0.1:{metrics_port}",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=etcd-cluster-token-{name}",
            f"--cert-file={pki_dir}/server.crt",
            f"--key-file={pki_dir}/server.key",
            f"--trusted-ca-file={pki_dir}/ca.crt",
            "--client-cert-auth=true",
            f"--peer-cert-file={pki_dir}/peer.crt",
            f"--peer-key-file={pki_dir}/peer.key",
            f"--peer-trusted-ca-file={pki_dir}/peers-ca.crt",
            "--peer-client-cert-auth=true",
        ]
        if etcd.heartbeat_interval:
            args.append(f"--heartbeat-interval={_milliseconds(etcd.heartbeat_interval)}")
        if etcd.leader_election_timeout:
            args.append(f"--election-timeout={_milliseconds(etcd.leader_election_timeout)}")
        version = (etcd.version or "3.5.21").lstrip("v")
        pod_name = ETCD_POD_NAMES[name]
        pod = static_pod(
            pod_name,
            image=etcd.image or f"{REGISTRY}/etcd:{version}-0",
            command=["/usr/local/bin/etcd"],
            args=sorted(args),
            container_name="etcd-container",
            resources=_resources(etcd.cpu_request or "200m", etcd.memory_request or "100Mi"),
            probe=_probe(metrics_port, "/health", "HTTP"),
            ports=[
                {"name": "serverport", "containerPort": peer_port, "hostPort": peer_port},
                {"name": "clientport", "containerPort": client_port, "hostPort": client_port},
            ],
            volumes=[
                _host_volume(
                    "varetcdata",
                    f"{etcd_data_dir(self.etcd_volumes[name])}/data",
                    data_dir,
                    read_only=False,
                    type_="DirectoryOrCreate",
                ),
                _host_volume("pki", pki_dir),
            ],
        )
        pod["metadata"]["labels"]["etcd-member"] = member
        self.manifest(f"etcd-{name}.yaml", pod)

    def kube_apiserver(self) -> None:
        api = self.spec.kube_api_server
        d = f"{SRV}/kube-apiserver"
        internal = self.config.api_internal_name
        service_range = (api.service_cluster_ip_range if api else None) or self.spec.service_cluster_ip_range
        if not service_range:
            raise RenderError("spec.serviceClusterIPRange is not set (populate the spec first)")
        first_service_ip = str(ipaddress.ip_network(service_range, strict=False).network_address + 1)
        domain = self.spec.cluster_dns_domain or "cluster.local"
        dns_names = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{domain}",
            self.config.api_public_name,
            internal,
        ]
        for extra in [self.config.api_endpoint, *(self.spec.additional_sans or [])]:
            if extra not in dns_names and not _is_ip(extra):
                dns_names.append(extra)
        ips = [first_service_ip, "127.0.0.1"] + [s for s in self.spec.additional_sans or [] if _is_ip(s)]
        server = self.certs.issue(
            KUBERNETES_CA, "kubernetes-master", usage="server", dns_names=dns_names, ip_addresses=ips
        )
        etcd_client = self.certs.issue(ETCD_CLIENTS_CA, "kube-apiserver", usage="client")
        kubelet_api = self.certs.issue(KUBERNETES_CA, "kubelet-api", usage="client")
        aggregator = self.certs.issue(AGGREGATOR_CA, "aggregator", usage="client")
        sa_cert, sa_key = self._service_account()
        self.add(
            *_pair(d, "server", server),
            *_pair(d, "etcd-client", etcd_client),
            *_pair(d, "kubelet-api", kubelet_api),
            *_pair(d, "apiserver-aggregator", aggregator),
            FileSpec(f"{d}/etcd-ca.crt", self.certs.ca_cert(ETCD_CLIENTS_CA), PUBLIC),
            FileSpec(f"{d}/apiserver-aggregator-ca.crt", self.certs.ca_cert(AGGREGATOR_CA), PUBLIC),
            FileSpec(f"{d}/service-account.key", sa_key, PRIVATE),
            FileSpec(f"{d}/service-account.pub", public_key_pem(sa_cert), PUBLIC),
        )

        flags: dict[str, FlagValue] = {
            "bind-address": "0.0.0.0",
            "kubelet-preferred-address-types": "InternalIP,Hostname,ExternalIP",
            "service-account-jwks-uri": f"https://{internal}/openid/v1/jwks",
            "storage-backend": "etcd3",
        }
        flags.update(component_flags(api, renames=API_SERVER_RENAMES, repeated=API_SERVER_REPEATED))
        admission = list((api.enable_admission_plugins if api else None) or [])
        for plugin in (api.append_admission_plugins if api else None) or []:
            if plugin not in admission:
                admission.append(plugin)
        if admission:
            flags["enable-admission-plugins"] = ",".join(admission)
        issuers = list((api.additional_service_account_issuers if api else None) or [])
        if issuers:
            issuer = flags.get("service-account-issuer")
            first = [issuer] if isinstance(issuer, str) else list(issuer or [])
            flags["service-account-issuer"] = first + issuers
        etcd_names = {e.name for e in self.spec.etcd_clusters or []}
        flags["etcd-servers"] = f"https://127.0.0.1:{ETCD_PORTS['main'][1]}"
        if "events" in etcd_names:
            flags["etcd-servers-overrides"] = f"/events#https://127.0.0.1:{ETCD_PORTS['events'][1]}"
        flags.update(
            {
                "service-cluster-ip-range": service_range,
                "client-ca-file": CA_CRT,
                "etcd-cafile": f"{d}/etcd-ca.crt",
                "etcd-certfile": f"{d}/etcd-client.crt",
                "etcd-keyfile": f"{d}/etcd-client.key",
                "tls-cert-file": f"{d}/server.crt",
                "tls-private-key-file": f"{d}/server.key",
                "kubelet-client-certificate": f"{d}/kubelet-api.crt",
                "kubelet-client-key": f"{d}/kubelet-api.key",
                "proxy-client-cert-file": f"{d}/apiserver-aggregator.crt",
                "proxy-client-key-file": f"{d}/apiserver-aggregator.key",
                "requestheader-client-ca-file": f"{d}/apiserver-aggregator-ca.crt",
                "requestheader-allowed-names": "aggregator",
                "requestheader-extra-headers-prefix": "X-Remote-Extra-",
                "requestheader-group-headers": "X-Remote-Group",
                "requestheader-username-headers": "X-Remote-User",
                "service-account-key-file": [f"{d}/service-account.pub"],
                "service-account-signing-key-file": f"{d}/service-account.key",
            }
        )
        port = int((api.secure_port if api else None) or 443)
        pod = static_pod(
            "kube-apiserver",
            image=self.image("kube-apiserver", api.image if api else None),
            command=["/usr/local/bin/kube-apiserver"],
            args=format_flags(flags),
            resources=_resources(
                (api.cpu_request if api else None) or "150m",
                api.memory_request if api else None,
                api.cpu_limit if api else None,
                api.memory_limit if api else None,
            ),
            probe=_probe(port, "/livez", delay=10),
            ports=[{"name": "https", "containerPort": port, "hostPort": port}],
            env=(api.env if api else None),
            volumes=[
                _host_volume("etcssl", "/etc/ssl"),
                _host_volume("kubernetesca", CA_CRT),
                _host_volume("srvkapi", d),
            ],
        )
        pod["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "kube-apiserver"}
        self.manifest("kube-apiserver.yaml", pod)

    def addons_applier(self) -> None:
        """``pykops addons apply`` for this cluster, run by systemd on every control-plane machine.

        kOps runs its channels tool from protokube on the control plane; here a unit runs the same applier
        that ``pykops addons apply`` runs from a workstation: it reads the bootstrap channel that ``update
        cluster`` wrote to the state store (the store is the parent of ``configBase``) and applies it to the
        local API server as ``system:pykops-addons`` (group ``system:masters``: add-ons create cluster roles
        and bindings, which needs every permission they grant). The certificate is issued here from the CA
        the control plane holds, like the components' own. Applying is idempotent (unchanged add-ons are
        skipped) and several control-plane machines applying at once converge (server-side apply, one field
        manager), so every control-plane machine runs it.

        The service is ``Type=simple`` so that nodeup's ``systemctl enable --now`` does not wait for it (the
        API server may not be up yet); ``Restart=on-failure`` retries until the API answers, and the timer
        re-runs it every 10 minutes to pick up a channel that a later ``update cluster`` wrote.
        """
        base = (self.config.config_base or "").rstrip("/")
        store, _, cluster = base.rpartition("/")
        if cluster != self.name or not store:
            raise RenderError(
                f"configBase {base!r} does not end with the cluster name {self.name}; cannot locate the "
                "state store for the add-on applier"
            )
        client = self.certs.issue(KUBERNETES_CA, ADDONS_USER, usage="client", organization=[ADDONS_GROUP])
        self.add(
            _kubeconfig(
                ADDONS_KUBECONFIG,
                self.name,
                LOCAL_API,
                self.certs.ca_cert(KUBERNETES_CA),
                client,
                ADDONS_USER,
                None,
            )
        )
        # The same interpreter invocation as bootstrap.py: -S, so only the release and the standard library
        # are importable (a shell script, not an inline ExecStart, to keep systemd's quoting out of it).
        launcher = (
            "#!/bin/sh\n"
            f"# Written by pykops nodeup: runs the pykops release unpacked in {PYKOPS_LIB}.\n"
            "exec /usr/bin/python3 -S -c 'import sys; "
            f'sys.path.insert(0, "{PYKOPS_LIB}"); '
            'from pykops.cli.main import main; sys.exit(main(sys.argv[1:]))\' "$@"\n'
        )
        self.add(FileSpec(PYKOPS_CLI, launcher.encode(), EXECUTABLE))
        command = _exec(
            PYKOPS_CLI,
            ["--state", store, "addons", "apply", self.name, "--kubeconfig", ADDONS_KUBECONFIG],
        )
        service = _unit(
            [
                (
                    "Unit",
                    [
                        (
                            "Description",
                            f"pykops add-on applier for {self.name} (the channel in the state store)",
                        ),
                        ("After", "kubelet.service"),
                        ("Wants", "kubelet.service"),
                        ("StartLimitIntervalSec", "0"),
                    ],
                ),
                (
                    "Service",
                    [
                        ("Type", "simple"),
                        ("ExecStart", command),
                        ("Restart", "on-failure"),
                        ("RestartSec", "30s"),
                    ],
                ),
                ("Install", [("WantedBy", "multi-user.target")]),
            ]
        )
        timer = _unit(
            [
                ("Unit", [("Description", f"re-apply the add-ons of {self.name} periodically")]),
                ("Timer", [("OnBootSec", "2min"), ("OnUnitInactiveSec", "10min")]),
                ("Install", [("WantedBy", "timers.target")]),
            ]
        )
        self.add(FileSpec(ADDONS_SERVICE, service, PUBLIC), FileSpec(ADDONS_TIMER, timer, PUBLIC))

    def _service_account(self) -> tuple[bytes, bytes]:
        if SERVICE_ACCOUNT not in self.certs.pki:
            raise RenderError(
                f"keyset {SERVICE_ACCOUNT} is missing; the control plane needs it to sign tokens"
            )
        return self.certs.pki[SERVICE_ACCOUNT]

    def _component_kubeconfig(self, component: str, user: str) -> FileSpec:
        client = self.certs.issue(KUBERNETES_CA, user, usage="client")
        return _kubeconfig(
            f"/var/lib/{component}/kubeconfig",
            self.name,
            LOCAL_API,
            self.certs.ca_cert(KUBERNETES_CA),
            client,
            component,
            None,
        )

    def kube_controller_manager(self) -> None:
        kcm = self.spec.kube_controller_manager
        d = f"{SRV}/kube-controller-manager"
        kubeconfig = "/var/lib/kube-controller-manager/kubeconfig"
        ca = self.certs.ca(KUBERNETES_CA)
        _, sa_key = self._service_account()
        domain = self.spec.cluster_dns_domain or "cluster.local"
        serving = self.certs.issue(
            KUBERNETES_CA,
            "kube-controller-manager",
            usage="server",
            dns_names=[f"kube-controller-manager.kube-system.svc.{domain}"],
        )
        self.add(
            self._component_kubeconfig("kube-controller-manager", "system:kube-controller-manager"),
            FileSpec(f"{d}/ca.crt", ca.cert_pem, PUBLIC),
            FileSpec(f"{d}/ca.key", ca.key_pem, PRIVATE),
            FileSpec(f"{d}/service-account.key", sa_key, PRIVATE),
            *_pair(d, "server", serving),
        )
        flags: dict[str, FlagValue] = {"cluster-name": self.name}
        cloud = self.kubelet_section().cloud_provider
        if cloud == "external":
            flags["cloud-provider"] = "external"
        if self.spec.service_cluster_ip_range:
            flags["service-cluster-ip-range"] = self.spec.service_cluster_ip_range
        flags.update(component_flags(kcm, renames=CONTROLLER_MANAGER_RENAMES))
        flags.update(
            {
                "kubeconfig": kubeconfig,
                "authentication-kubeconfig": kubeconfig,
                "authorization-kubeconfig": kubeconfig,
                "cluster-signing-cert-file": f"{d}/ca.crt",
                "cluster-signing-key-file": f"{d}/ca.key",
                "root-ca-file": CA_CRT,
                "service-account-private-key-file": f"{d}/service-account.key",
                "tls-cert-file": f"{d}/server.crt",
                "tls-private-key-file": f"{d}/server.key",
            }
        )
        pod = static_pod(
            "kube-controller-manager",
            image=self.image("kube-controller-manager", kcm.image if kcm else None),
            command=["/usr/local/bin/kube-controller-manager"],
            args=format_flags(flags),
            resources=_resources(
                (kcm.cpu_request if kcm else None) or "100m",
                kcm.memory_request if kcm else None,
                kcm.cpu_limit if kcm else None,
                kcm.memory_limit if kcm else None,
            ),
            probe=_probe(10257),
            volumes=[
                _host_volume("etcssl", "/etc/ssl"),
                _host_volume("cabundle", CA_CRT),
                _host_volume("srvkcm", d),
                _host_volume("varlibkcm", "/var/lib/kube-controller-manager"),
            ],
        )
        self.manifest("kube-controller-manager.yaml", pod)

    def kube_scheduler(self) -> None:
        sched = self.spec.kube_scheduler
        d = f"{SRV}/kube-scheduler"
        kubeconfig = "/var/lib/kube-scheduler/kubeconfig"
        domain = self.spec.cluster_dns_domain or "cluster.local"
        serving = self.certs.issue(
            KUBERNETES_CA,
            "kube-scheduler",
            usage="server",
            dns_names=[f"kube-scheduler.kube-system.svc.{domain}"],
        )
        config = scheduler_configuration(sched, kubeconfig)
        self.add(
            self._component_kubeconfig("kube-scheduler", "system:kube-scheduler"),
            FileSpec("/var/lib/kube-scheduler/config.yaml", _yaml(config), PUBLIC),
            *_pair(d, "server", serving),
        )
        flags = component_flags(sched, renames=SCHEDULER_RENAMES)
        flags.update(
            {
                "config": "/var/lib/kube-scheduler/config.yaml",
                "authentication-kubeconfig": kubeconfig,
                "authorization-kubeconfig": kubeconfig,
                "tls-cert-file": f"{d}/server.crt",
                "tls-private-key-file": f"{d}/server.key",
            }
        )
        pod = static_pod(
            "kube-scheduler",
            image=self.image("kube-scheduler", sched.image if sched else None),
            command=["/usr/local/bin/kube-scheduler"],
            args=format_flags(flags),
            resources=_resources(
                (sched.cpu_request if sched else None) or "100m",
                sched.memory_request if sched else None,
                sched.cpu_limit if sched else None,
                sched.memory_limit if sched else None,
            ),
            probe=_probe(10259),
            volumes=[
                _host_volume("varlibkubescheduler", "/var/lib/kube-scheduler"),
                _host_volume("srvscheduler", d),
            ],
        )
        self.manifest("kube-scheduler.yaml", pod)


def scheduler_configuration(sched: Any, kubeconfig: str) -> dict[str, Any]:
    """KubeSchedulerConfiguration v1: the client connection and leader election from the spec."""
    client: dict[str, Any] = {"kubeconfig": kubeconfig}
    if sched is not None:
        qps = sched.kube_api_qps if sched.kube_api_qps is not None else sched.qps
        burst = sched.kube_api_burst if sched.kube_api_burst is not None else sched.burst
        if qps is not None:
            client["qps"] = float(qps)
        if burst is not None:
            client["burst"] = int(burst)
    doc: dict[str, Any] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": client,
    }
    election = sched.leader_election if sched is not None else None
    if election is not None and election.leader_elect is not None:
        doc["leaderElection"] = {"leaderElect": election.leader_elect}
    return doc


def containerd_config(
    version: str,
    *,
    sandbox_image: str,
    systemd_cgroup: bool,
    kubenet: bool,
    mirrors: bool = False,
    root: str | None = None,
    state: str | None = None,
    address: str | None = None,
    additions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """containerd's config.toml as a tree: schema version 2 for containerd 1.x, 3 for 2.0-2.2, 4 for 2.3+."""
    major, minor = (int(p) for p in [*version.lstrip("v").split("."), "0"][:2])
    tree: dict[str, Any] = {}
    if root:
        tree["root"] = root
    if state:
        tree["state"] = state
    if major < 2:
        tree["version"] = 2
        cri: dict[str, Any] = {"sandbox_image": sandbox_image}
        if kubenet:
            cri["cni"] = {"conf_template": "/etc/containerd/config-cni.template"}
        if mirrors:
            cri["registry"] = {"config_path": "/etc/containerd/certs.d"}
        cri["containerd"] = {
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": systemd_cgroup},
                }
            },
        }
        tree["plugins"] = {"io.containerd.grpc.v1.cri": cri}
    else:
        tree["version"] = 4 if (major, minor) >= (2, 3) else 3
        images: dict[str, Any] = {"pinned_images": {"sandbox": sandbox_image}}
        if mirrors:
            images["registry"] = {"config_path": "/etc/containerd/certs.d"}
        runtime: dict[str, Any] = {}
        if kubenet:
            runtime["cni"] = {"conf_template": "/etc/containerd/config-cni.template"}
        runtime["containerd"] = {
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": systemd_cgroup},
                }
            },
        }
        tree["plugins"] = {"io.containerd.cri.v1.images": images, "io.containerd.cri.v1.runtime": runtime}
    if address:
        tree["grpc"] = {"address": address}
    for path, raw in sorted((additions or {}).items()):
        _set_toml_path(tree, _toml_path(path), _toml_scalar(raw))
    # "version" first, as containerd's own files have it.
    return {"version": tree.pop("version"), **tree}


def _toml_path(path: str) -> list[str]:
    """``plugins."io.containerd.grpc.v1.cri".x`` → ``["plugins", "io.containerd.grpc.v1.cri", "x"]``."""
    parts = re.findall(r'"([^"]*)"|([^.]+)', path)
    return [quoted or bare for quoted, bare in parts]


def _toml_scalar(raw: str) -> Any:
    text = str(raw).strip()
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text.strip('"')


def _set_toml_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = tree.setdefault(part, {})
        if not isinstance(child, dict):
            raise RenderError(f"containerd configAdditions: {'.'.join(path)} crosses the value {part!r}")
        tree = child
    tree[path[-1]] = value


def _milliseconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration.strip())
    if not match:
        raise RenderError(f"invalid etcd duration {duration!r}; expected e.g. 100ms, 1s")
    value, unit = float(match.group(1)), match.group(2)
    return int(value * {"ms": 1, "s": 1000, "m": 60000}[unit])


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


KUBENET_CNI_TEMPLATE = """{
    "cniVersion": "1.0.0",
    "name": "k8s-pod-network",
    "plugins": [
        {
            "type": "ptp",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        },
        {
            "type": "portmap",
            "capabilities": {"portMappings": true}
        }
    ]
}
"""


def _iptables_setup(non_masquerade_cidr: str) -> str:
    return (
        "#!/bin/bash\n"
        "# Written by pykops nodeup: masquerade pods' traffic leaving the pod network (kubenet).\n"
        "set -o errexit\n"
        "iptables -w -t nat -N IP-MASQ || true\n"
        "iptables -w -t nat -C POSTROUTING -m addrtype ! --dst-type LOCAL -j IP-MASQ 2>/dev/null || "
        "iptables -w -t nat -A POSTROUTING -m addrtype ! --dst-type LOCAL -j IP-MASQ\n"
        "iptables -w -t nat -F IP-MASQ\n"
        f"iptables -w -t nat -A IP-MASQ -d {non_masquerade_cidr} -j RETURN\n"
        "iptables -w -t nat -A IP-MASQ -j MASQUERADE\n"
    )


def render_machine(
    config: NodeupConfig,
    *,
    instance_id: str,
    zone: str,
    node_name: str,
    pki: Pki,
    etcd_volumes: Mapping[str, str] | None = None,
    ca_certificates: CaCertificates | None = None,
) -> list[FileSpec]:
    """Every file of one machine of ``config``'s instance group, sorted by path.

    ``pki`` maps keyset names to the (certificate, private key) PEM of their primary item: on the control
    plane the CAs (the machine's certificates are issued from them here), on a worker node only its
    ``kubelet`` and ``kube-proxy`` keypairs (any CA key given is never used). The CA certificates trusted
    are the config's ``caCertificates``, updated with ``ca_certificates`` (keyset name → PEM bundle; for
    configs written without them). ``etcd_volumes`` maps each etcd cluster (``main``, ``events``) whose
    member this machine runs to the id of the EBS volume attached for it (control plane only).
    """
    machine = _Machine(
        config,
        instance_id=instance_id,
        zone=zone,
        node_name=node_name,
        pki=pki,
        etcd_volumes=etcd_volumes or {},
        ca_certificates=ca_certificates or {},
    )
    return machine.render()
