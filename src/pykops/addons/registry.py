"""The add-on registry: which add-ons exist, their versions, and which ones a cluster needs (pure).

Each :class:`Addon` has a kops-style name (``coredns.addons.k8s.io``), a ``needed(spec)`` predicate, a
function giving the values its templates use, and versions. Each :class:`AddonVersion` fits a Kubernetes
version range (semver comparators, as in kops channels) and lists its manifest templates (files under
``pykops/addons/data/``) and the images it pins. The first version whose range contains the cluster's
``kubernetesVersion`` is the one rendered, so upgrading Kubernetes re-renders the add-ons whose ranges say so.

Images are maintained upstream images pinned by tag (versions as kops and the upstream projects ship them);
a spec field that overrides an image (``kubeDNS.coreDNSImage``, ``metricsServer.image``,
``clusterAutoscaler.image``, ``networking.amazonvpc.image``) wins over the pin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pykops.api.channel import VersionRange, parse_version
from pykops.api.models import Cluster, ClusterSpec
from pykops.api.regions import region_of_zone
from pykops.api.validate import CLOUD_ROUTES_PLUGINS

Values = dict[str, Any]


@dataclass(frozen=True)
class AddonVersion:
    version: str
    kubernetes_version: str  # a range such as ">=1.32.0 <1.33.0"
    templates: tuple[str, ...]  # paths under pykops/addons/data/
    images: Mapping[str, str] = field(default_factory=dict)  # template variable -> pinned image

    def fits(self, kubernetes_version: str) -> bool:
        return VersionRange.parse(self.kubernetes_version).contains(parse_version(kubernetes_version))


@dataclass(frozen=True)
class Addon:
    name: str
    needed: Callable[[ClusterSpec], bool]
    versions: tuple[AddonVersion, ...]
    values: Callable[[Cluster], Values] = lambda _c: {}
    # template variable -> the spec's override of that image, if any
    image_overrides: Callable[[ClusterSpec], Mapping[str, str | None]] = lambda _s: {}

    def version_for(self, kubernetes_version: str) -> AddonVersion | None:
        return next((v for v in self.versions if v.fits(kubernetes_version)), None)


def plugin(spec: ClusterSpec) -> str | None:
    return spec.networking.plugin() if spec.networking else None


def _bool(value: bool | None, default: bool) -> str:
    return "true" if (default if value is None else value) else "false"


def common_values(cluster: Cluster) -> Values:
    """Values every template may use, all taken from the completed spec."""
    s = cluster.spec
    zones = [sub.zone for sub in s.subnets or [] if sub.zone]
    dns_ip = (s.kube_dns.server_ip if s.kube_dns else None) or (s.kubelet.cluster_dns if s.kubelet else None)
    return {
        "clusterName": cluster.name,
        "region": region_of_zone(zones[0]) if zones else "",
        "podCIDR": s.pod_cidr or "",
        "serviceCIDR": s.service_cluster_ip_range or "",
        "dnsServerIP": dns_ip or "",
        "clusterDomain": (s.kube_dns.domain if s.kube_dns else None)
        or s.cluster_dns_domain
        or "cluster.local",
        "apiInternalName": s.master_internal_name or f"api.internal.{cluster.name}",
        "kubernetesVersion": s.kubernetes_version or "",
    }


# --- per add-on values (defaults as kops') -----------------------------------------------------------------


def _coredns_values(cluster: Cluster) -> Values:
    dns = cluster.spec.kube_dns
    upstream = (dns.upstream_nameservers if dns else None) or ["/etc/resolv.conf"]
    return {
        "replicas": (dns.replicas if dns else None) or 2,
        "memoryLimit": (dns.memory_limit if dns else None) or "170Mi",
        "cpuRequest": (dns.cpu_request if dns else None) or "100m",
        "memoryRequest": (dns.memory_request if dns else None) or "70Mi",
        "upstreamNameservers": " ".join(upstream),
    }


# CLOUD_ROUTES_PLUGINS (from validate, which limits their node count): plugins whose pod traffic crosses the
# VPC unencapsulated, addressed to pod IPs: the VPC needs a route per node's pod CIDR, which the cloud
# controller's route controller creates (and it turns the instances' source/destination check off, without
# which EC2 drops traffic for addresses that are not the instance's).


def _ccm_values(cluster: Cluster) -> Values:
    return {"configureCloudRoutes": _bool(plugin(cluster.spec) in CLOUD_ROUTES_PLUGINS, False)}


def _calico_values(cluster: Cluster) -> Values:
    net = cluster.spec.networking
    calico = net.calico if net else None
    canal = net.canal if net else None
    mtu = (calico.mtu if calico else None) or (canal.mtu if canal else None)
    # AWS jumbo frames (9001) minus the 20-byte IP-in-IP header; canal's VXLAN takes 50.
    return {"mtu": str(mtu or (8981 if plugin(cluster.spec) == "calico" else 8951))}


def _flannel_values(cluster: Cluster) -> Values:
    net = cluster.spec.networking
    backend = net.flannel.backend if net and net.flannel else None
    return {"backend": backend or "vxlan"}


def _metrics_server_values(cluster: Cluster) -> Values:
    ms = cluster.spec.metrics_server
    insecure = ms is None or ms.insecure is not False  # kops: insecure unless told otherwise
    return {"kubeletTLSArgs": ["--kubelet-insecure-tls"] if insecure else []}


def _autoscaler_values(cluster: Cluster) -> Values:
    ca = cluster.spec.cluster_autoscaler
    assert ca is not None
    return {
        "expander": ca.expander or "random",
        "balanceSimilarNodeGroups": _bool(ca.balance_similar_node_groups, False),
        "scaleDownUtilizationThreshold": ca.scale_down_utilization_threshold or "0.5",
        "skipNodesWithLocalStorage": _bool(ca.skip_nodes_with_local_storage, True),
        "skipNodesWithSystemPods": _bool(ca.skip_nodes_with_system_pods, True),
        "newPodScaleUpDelay": ca.new_pod_scale_up_delay or "0s",
        "scaleDownDelayAfterAdd": ca.scale_down_delay_after_add or "10m0s",
        "scaleDownUnneededTime": ca.scale_down_unneeded_time or "10m0s",
        "maxNodeProvisionTime": ca.max_node_provision_time or "15m0s",
        "awsUseStaticInstanceList": _bool(ca.aws_use_static_instance_list, False),
        "cpuRequest": ca.cpu_request or "100m",
        "memoryRequest": ca.memory_request or "300Mi",
    }


def _vpc_cni_values(cluster: Cluster) -> Values:
    region = common_values(cluster)["region"] or "us-west-2"
    # Amazon publishes the VPC CNI images in every region's ECR (account 602401143452 in the commercial
    # partition); pulling from the cluster's own region keeps the traffic in region.
    registry = f"602401143452.dkr.ecr.{region}.amazonaws.com"
    return {
        "image": f"{registry}/amazon-k8s-cni:v1.21.1",
        "initImage": f"{registry}/amazon-k8s-cni-init:v1.21.1",
    }


# --- needed ---------------------------------------------------------------------------------------------


def _rbac_needed(spec: ClusterSpec) -> bool:
    return spec.authorization is not None and spec.authorization.mode() == "RBAC"


def _ebs_csi_needed(spec: ClusterSpec) -> bool:
    ebs = spec.cloud_config.aws_ebs_csi_driver if spec.cloud_config else None
    return ebs is None or (ebs.enabled is not False and ebs.managed is not False)


def _storage_needed(spec: ClusterSpec) -> bool:
    return _ebs_csi_needed(spec) and not (
        spec.cloud_config and spec.cloud_config.manage_storage_classes is False
    )


def _coredns_needed(spec: ClusterSpec) -> bool:
    return spec.kube_dns is None or spec.kube_dns.provider in (None, "CoreDNS")


def _enabled(value: Any) -> bool:
    return value is not None and value.enabled is True


def _ingress_provider(spec: ClusterSpec) -> str | None:
    return spec.ingress_controller.provider if spec.ingress_controller else None


ALL = ">=1.0.0"
# ingress-nginx (kubernetes/ingress-nginx controller-v1.15.1): one range, its objects use only GA APIs.
INGRESS_NGINX = "v1.15.1"
CALICO = "v3.32.0"
#: The images calico and canal share.
CALICO_IMAGES = {
    "nodeImage": f"quay.io/calico/node:{CALICO}",
    "cniImage": f"quay.io/calico/cni:{CALICO}",
    "kubeControllersImage": f"quay.io/calico/kube-controllers:{CALICO}",
}
FLANNEL = "v0.26.3"

ADDONS: tuple[Addon, ...] = (
    Addon(
        "rbac.addons.k8s.io",
        _rbac_needed,
        (AddonVersion("1.8.0", ALL, ("rbac/kubelet-binding.yaml",)),),
    ),
    Addon(
        "coredns.addons.k8s.io",
        _coredns_needed,
        (
            AddonVersion(
                "1.11.3",
                ">=1.32.0 <1.33.0",
                ("coredns/coredns.yaml",),
                {"image": "registry.k8s.io/coredns/coredns:v1.11.3"},
            ),
            AddonVersion(
                "1.12.0",
                ">=1.33.0 <1.34.0",
                ("coredns/coredns.yaml",),
                {"image": "registry.k8s.io/coredns/coredns:v1.12.0"},
            ),
            AddonVersion(
                "1.12.1",
                ">=1.34.0",
                ("coredns/coredns.yaml",),
                {"image": "registry.k8s.io/coredns/coredns:v1.12.1"},
            ),
        ),
        _coredns_values,
        lambda s: {"image": s.kube_dns.core_dns_image if s.kube_dns else None},
    ),
    Addon(
        "aws-cloud-controller.addons.k8s.io",
        lambda _s: True,
        tuple(
            AddonVersion(
                tag.removeprefix("v"),
                rng,
                ("aws-cloud-controller/ccm.yaml",),
                {"image": f"registry.k8s.io/provider-aws/cloud-controller-manager:{tag}"},
            )
            for tag, rng in (
                ("v1.32.1", ">=1.32.0 <1.33.0"),
                ("v1.33.0", ">=1.33.0 <1.34.0"),
                ("v1.34.0", ">=1.34.0 <1.35.0"),
                ("v1.35.0", ">=1.35.0"),
            )
        ),
        _ccm_values,
    ),
    Addon(
        "aws-ebs-csi-driver.addons.k8s.io",
        _ebs_csi_needed,
        (
            AddonVersion(
                "1.61.1",
                ALL,
                ("aws-ebs-csi-driver/ebs-csi.yaml",),
                {
                    "driverImage": "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.61.1",
                    "provisionerImage": "public.ecr.aws/csi-components/csi-provisioner:v6.2.0-eksbuild.7",
                    "attacherImage": "public.ecr.aws/csi-components/csi-attacher:v4.12.0-eksbuild.2",
                    "resizerImage": "public.ecr.aws/csi-components/csi-resizer:v2.2.0-eksbuild.2",
                    "livenessProbeImage": "public.ecr.aws/csi-components/livenessprobe:v2.19.0-eksbuild.2",
                    "nodeDriverRegistrarImage": (
                        "public.ecr.aws/csi-components/csi-node-driver-registrar:v2.17.0-eksbuild.2"
                    ),
                },
            ),
        ),
    ),
    Addon(
        "storage-aws.addons.k8s.io",
        _storage_needed,
        (AddonVersion("1.17.0", ALL, ("storage-aws/gp3.yaml",)),),
    ),
    Addon(
        "networking.projectcalico.org",
        lambda s: plugin(s) == "calico",
        (
            AddonVersion(
                CALICO.removeprefix("v"),
                ALL,
                ("calico/crds.yaml", "calico/rbac.yaml", "calico/calico.yaml"),
                CALICO_IMAGES,
            ),
        ),
        _calico_values,
    ),
    Addon(
        "networking.projectcalico.org.canal",
        lambda s: plugin(s) == "canal",
        (
            AddonVersion(
                CALICO.removeprefix("v"),
                ALL,
                ("calico/crds.yaml", "calico/rbac.yaml", "canal/canal.yaml"),
                {
                    **CALICO_IMAGES,
                    "flannelImage": f"docker.io/flannel/flannel:{FLANNEL}",
                },
            ),
        ),
        _calico_values,
    ),
    Addon(
        "networking.cilium.io",
        lambda s: plugin(s) == "cilium",
        (
            AddonVersion(
                "1.19.4",
                ALL,
                ("cilium/cilium.yaml",),
                {
                    "image": "quay.io/cilium/cilium:v1.19.4",
                    "operatorImage": "quay.io/cilium/operator-generic:v1.19.4",
                },
            ),
        ),
    ),
    Addon(
        "networking.flannel",
        lambda s: plugin(s) == "flannel",
        (
            AddonVersion(
                FLANNEL.removeprefix("v"),
                ALL,
                ("flannel/flannel.yaml",),
                {
                    "flannelImage": f"docker.io/flannel/flannel:{FLANNEL}",
                    "cniPluginImage": "docker.io/flannel/flannel-cni-plugin:v1.6.0-flannel1",
                },
            ),
        ),
        _flannel_values,
    ),
    Addon(
        "networking.amazon-vpc-routed-eni",
        lambda s: plugin(s) == "amazonvpc",
        (AddonVersion("1.21.1", ALL, ("amazon-vpc-cni/aws-node.yaml",)),),
        _vpc_cni_values,
        lambda s: {
            "image": s.networking.amazonvpc.image if s.networking and s.networking.amazonvpc else None
        },
    ),
    Addon(
        "networking.kuberouter",
        lambda s: plugin(s) == "kuberouter",
        (
            AddonVersion(
                "2.11.1",
                ALL,
                ("kube-router/kube-router.yaml",),
                {"image": "docker.io/cloudnativelabs/kube-router:v2.11.1"},
            ),
        ),
    ),
    Addon(
        "networking.kindnet",
        lambda s: plugin(s) == "kindnet",
        (AddonVersion("1.8.5", ALL, ("kindnet/kindnet.yaml",), {"image": "ghcr.io/aojea/kindnetd:v1.8.5"}),),
    ),
    Addon(
        "metrics-server.addons.k8s.io",
        lambda s: _enabled(s.metrics_server),
        (
            AddonVersion(
                "0.8.1",
                ALL,
                ("metrics-server/metrics-server.yaml",),
                {"image": "registry.k8s.io/metrics-server/metrics-server:v0.8.1"},
            ),
        ),
        _metrics_server_values,
        lambda s: {"image": s.metrics_server.image if s.metrics_server else None},
    ),
    Addon(
        "cluster-autoscaler.addons.k8s.io",
        lambda s: _enabled(s.cluster_autoscaler),
        tuple(
            AddonVersion(
                tag.removeprefix("v"),
                rng,
                ("cluster-autoscaler/cluster-autoscaler.yaml",),
                {"image": f"registry.k8s.io/autoscaling/cluster-autoscaler:{tag}"},
            )
            for tag, rng in (
                ("v1.32.1", ">=1.32.0 <1.33.0"),
                ("v1.33.0", ">=1.33.0 <1.34.0"),
                ("v1.34.3", ">=1.34.0 <1.35.0"),
                ("v1.35.0", ">=1.35.0"),
            )
        ),
        _autoscaler_values,
        lambda s: {"image": s.cluster_autoscaler.image if s.cluster_autoscaler else None},
    ),
    # spec.ingressController (a pykops extension): applied last, once DNS, the network and the cloud
    # controller (which creates its load balancer) are there. Without ingress-nginx's admission webhook.
    Addon(
        "ingress-nginx.addons.k8s.io",
        lambda s: _ingress_provider(s) == "nginx",
        (
            AddonVersion(
                INGRESS_NGINX.removeprefix("v"),
                ALL,
                ("ingress-nginx/ingress-nginx.yaml",),
                # The tag alone, without a digest, like every other pin here.
                {"image": f"registry.k8s.io/ingress-nginx/controller:{INGRESS_NGINX}"},
            ),
        ),
        lambda _c: {"replicas": 2},
    ),
)

#: The add-on that carries each network plugin (kubenet and cni have none: kubenet's routes come from the
#: cloud controller, "cni" means the user installs their own).
NETWORKING_ADDONS: dict[str, str] = {
    "calico": "networking.projectcalico.org",
    "canal": "networking.projectcalico.org.canal",
    "cilium": "networking.cilium.io",
    "flannel": "networking.flannel",
    "amazonvpc": "networking.amazon-vpc-routed-eni",
    "kuberouter": "networking.kuberouter",
    "kindnet": "networking.kindnet",
}


def addon(name: str) -> Addon:
    for a in ADDONS:
        if a.name == name:
            return a
    raise KeyError(name)
