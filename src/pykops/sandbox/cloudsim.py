"""The sandbox's simulated cloud controllers: what the AWS cloud controller manager and the EBS CSI driver
do on a real cluster, done against the AWS emulator (a SIMULATION: no AWS account is used).

* :class:`ServiceLoadBalancers` (the CCM's service controller): a Service of type LoadBalancer gets a classic
  ELB (named ``a`` + its uid without dashes, 32 characters, as the CCM names them) in the cluster's public
  subnets, with a security group ``k8s-elb-<lb name>`` open on the Service's ports, the nodes' instances
  registered, both tagged ``kubernetes.io/cluster/<cluster>=owned`` and ``kubernetes.io/service-name``; its
  DNS name goes into the Service's ``status.loadBalancer``. A deleted Service (or one no longer of type
  LoadBalancer) loses both. Ingresses of the ``nginx`` class get the ingress controller Service's address, as
  ingress-nginx publishes it.
* :class:`EbsCsi` (the EBS CSI driver's controller, and the PersistentVolume binder of the controller
  manager): a claim waits for its first consumer (``WaitForFirstConsumer``: a pod using it is bound to a
  node), then a volume is created in that node's zone (encrypted, gp3 by default, as the StorageClass says)
  with the driver's tags, a PersistentVolume with node affinity to that zone is made and bound; claims that
  name no StorageClass take the default one; a pre-provisioned PersistentVolume (``pykops create volume``) is
  bound to a claim that fits it. A volume is attached (``AttachVolume``, a VolumeAttachment object) to the
  instance of the node whose pod uses it, detached when no pod there does, and, when its claim is deleted,
  deleted (reclaim policy Delete) or kept and marked Released (Retain).

Both talk to the cluster only through the Kubernetes API (the official client) and to AWS only through boto3:
the same calls the real controllers make, not shortcuts into either emulator.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from pykops.sandbox.controllers import kube

log = logging.getLogger(__name__)

EBS_DRIVER = "ebs.csi.aws.com"
ZONE_LABEL = "topology.kubernetes.io/zone"
EBS_ZONE_KEY = ZONE_LABEL  # the well-known label the EBS CSI driver also uses (nodes have it)
SELECTED_NODE = "volume.kubernetes.io/selected-node"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
SERVICE_TAG = "kubernetes.io/service-name"
INGRESS_CONTROLLER_SERVICES = (
    ("ingress-nginx", "ingress-nginx-controller"),
    ("kube-system", "ingress-nginx"),
)


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _instance_of(node: Mapping[str, Any]) -> str | None:
    """``aws:///eu-west-1a/i-0abc`` → ``i-0abc``."""
    provider = (node.get("spec") or {}).get("providerID") or ""
    tail = provider.rsplit("/", 1)[-1]
    return tail if tail.startswith("i-") else None


def _ready(node: Mapping[str, Any]) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def elb_name(service_uid: str) -> str:
    """The CCM's name for a Service's classic ELB: ``a`` + the uid without dashes, 32 characters."""
    return ("a" + service_uid.replace("-", ""))[:32]


class _Base:
    def __init__(self, api: Any, *, cluster_name: str, region: str) -> None:
        import boto3
        from kubernetes import client

        self.api = api
        self.kube = kube.Kube(api)
        self.core: Any = client.CoreV1Api(api)
        self.cluster = cluster_name
        self.region = region
        self.ec2: Any = boto3.client("ec2", region_name=region)
        self.owned = {f"kubernetes.io/cluster/{cluster_name}": "owned", "KubernetesCluster": cluster_name}

    def nodes(self) -> list[dict[str, Any]]:
        return self.kube.list(kube.NODE)


# ---------------------------------------------------------------------------------------------------------
# Services of type LoadBalancer


class ServiceLoadBalancers(_Base):
    """The service controller of the AWS cloud controller manager (classic ELBs), simulated."""

    def __init__(self, api: Any, *, cluster_name: str, region: str) -> None:
        super().__init__(api, cluster_name=cluster_name, region=region)
        import boto3
        from kubernetes import client

        self.elb: Any = boto3.client("elb", region_name=region)
        self.networking: Any = client.NetworkingV1Api(api)

    def sync_once(self) -> None:
        services = self.kube.list(kube.SERVICE)
        wanted: dict[str, dict[str, Any]] = {}
        for svc in services:
            if (svc.get("spec") or {}).get("type") == "LoadBalancer":
                wanted[elb_name(svc["metadata"]["uid"])] = svc
        existing = self._owned_balancers()
        nodes = [n for n in self.nodes() if _instance_of(n)]
        for name, svc in wanted.items():
            dns = existing.get(name) or self._create(name, svc)
            self._register(name, nodes)
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if [i.get("hostname") for i in ingress] != [dns]:
                self.core.patch_namespaced_service_status(
                    svc["metadata"]["name"],
                    svc["metadata"]["namespace"],
                    {"status": {"loadBalancer": {"ingress": [{"hostname": dns}]}}},
                )
                svc["status"] = {
                    **(svc.get("status") or {}),
                    "loadBalancer": {"ingress": [{"hostname": dns}]},
                }
        for name in set(existing) - set(wanted):
            self._delete(name)
        self._publish_ingresses(services)

    def _owned_balancers(self) -> dict[str, str]:
        """Name → DNS name of this cluster's Service ELBs (tagged owned and with a service name)."""
        out: dict[str, str] = {}
        descriptions = self.elb.describe_load_balancers().get("LoadBalancerDescriptions") or []
        names = [str(d["LoadBalancerName"]) for d in descriptions]
        dns = {str(d["LoadBalancerName"]): str(d.get("DNSName") or "") for d in descriptions}
        for start in range(0, len(names), 20):
            tags = self.elb.describe_tags(LoadBalancerNames=names[start : start + 20])["TagDescriptions"]
            for item in tags:
                kv = {t["Key"]: t.get("Value", "") for t in item.get("Tags") or []}
                if kv.get(f"kubernetes.io/cluster/{self.cluster}") == "owned" and SERVICE_TAG in kv:
                    out[str(item["LoadBalancerName"])] = dns[str(item["LoadBalancerName"])]
        return out

    def _public_subnets(self) -> list[dict[str, Any]]:
        subnets = self.ec2.describe_subnets(
            Filters=[{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{self.cluster}"]}]
        )["Subnets"]
        public = [
            s for s in subnets if any(t["Key"] == "kubernetes.io/role/elb" for t in s.get("Tags") or [])
        ]
        return public or subnets

    def _create(self, name: str, svc: Mapping[str, Any]) -> str:
        subnets = self._public_subnets()
        if not subnets:
            raise RuntimeError(f"cluster {self.cluster} has no subnets for a load balancer")
        ports = [p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("nodePort") or p.get("port")]
        tags = {**self.owned, SERVICE_TAG: f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"}
        sg = self.ec2.create_security_group(
            GroupName=f"k8s-elb-{name}",
            Description=f"Security group for Kubernetes ELB {name} ({tags[SERVICE_TAG]})",
            VpcId=subnets[0]["VpcId"],
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        )["GroupId"]
        permissions = [
            {
                "IpProtocol": "tcp",
                "FromPort": int(p["port"]),
                "ToPort": int(p["port"]),
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
            for p in ports
            if (p.get("protocol") or "TCP") == "TCP"
        ]
        if permissions:
            self.ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=permissions)
        listeners = [
            {
                "Protocol": "TCP",
                "LoadBalancerPort": int(p["port"]),
                "InstanceProtocol": "TCP",
                "InstancePort": int(p.get("nodePort") or p["port"]),
            }
            for p in ports
        ]
        by_zone: dict[str, str] = {}
        for subnet in subnets:
            by_zone.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
        response = self.elb.create_load_balancer(
            LoadBalancerName=name,
            Listeners=listeners,
            Subnets=sorted(by_zone.values()),
            SecurityGroups=[sg],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )
        log.info("service %s: created load balancer %s", tags[SERVICE_TAG], name)
        return str(response["DNSName"])

    def _register(self, name: str, nodes: Iterable[Mapping[str, Any]]) -> None:
        instances = sorted({i for n in nodes if (i := _instance_of(n))})
        current = self.elb.describe_load_balancers(LoadBalancerNames=[name])["LoadBalancerDescriptions"][0]
        have = sorted(i["InstanceId"] for i in current.get("Instances") or [])
        if have == instances:
            return
        gone = [i for i in have if i not in instances]
        new = [i for i in instances if i not in have]
        if new:
            self.elb.register_instances_with_load_balancer(
                LoadBalancerName=name, Instances=[{"InstanceId": i} for i in new]
            )
        if gone:
            self.elb.deregister_instances_from_load_balancer(
                LoadBalancerName=name, Instances=[{"InstanceId": i} for i in gone]
            )

    def _delete(self, name: str) -> None:
        groups = self.elb.describe_load_balancers(LoadBalancerNames=[name])["LoadBalancerDescriptions"][
            0
        ].get("SecurityGroups")
        self.elb.delete_load_balancer(LoadBalancerName=name)
        for group in groups or []:
            with contextlib.suppress(Exception):
                self.ec2.delete_security_group(GroupId=group)
        log.info("deleted load balancer %s and its security group", name)

    def _publish_ingresses(self, services: list[dict[str, Any]]) -> None:
        """Ingresses of class nginx get the ingress controller's load balancer address."""
        address = None
        for svc in services:
            key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
            if key in INGRESS_CONTROLLER_SERVICES:
                ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                address = ingress[0].get("hostname") if ingress else None
        if not address:
            return
        items = self.kube.list(kube.INGRESS)
        for ing in items:
            cls = (ing.get("spec") or {}).get("ingressClassName") or (
                ing["metadata"].get("annotations") or {}
            ).get("kubernetes.io/ingress.class")
            if cls not in (None, "nginx"):
                continue
            current = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if [i.get("hostname") for i in current] != [address]:
                self.networking.patch_namespaced_ingress_status(
                    ing["metadata"]["name"],
                    ing["metadata"]["namespace"],
                    {"status": {"loadBalancer": {"ingress": [{"hostname": address}]}}},
                )


# ---------------------------------------------------------------------------------------------------------
# EBS volumes


def _quantity_gib(text: str) -> int:
    """A storage request (``1Gi``, ``500Mi``, ``10G``) in whole GiB, at least 1 (EBS's unit)."""
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "K": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            value = float(text[: -len(suffix)]) * units[suffix]
            break
    else:
        value = float(text)
    return max(1, -(-int(value) // 2**30))


def pick_static_pv(
    claim: Mapping[str, Any], pvs: Iterable[Mapping[str, Any]], default_class: str | None
) -> str | None:
    """The name of an Available PersistentVolume that satisfies ``claim`` (pure): same StorageClass, every
    access mode, enough capacity; the smallest that fits."""
    spec = claim.get("spec") or {}
    want_class = spec.get("storageClassName", default_class)
    want = _quantity_gib(((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi"))
    modes = set(spec.get("accessModes") or [])
    fits: list[tuple[int, str]] = []
    for pv in pvs:
        pv_spec = pv.get("spec") or {}
        if (pv.get("status") or {}).get("phase", "Available") != "Available" or pv_spec.get("claimRef"):
            continue
        if (pv_spec.get("storageClassName") or None) != (want_class or None):
            continue
        if not modes <= set(pv_spec.get("accessModes") or []):
            continue
        size = _quantity_gib((pv_spec.get("capacity") or {}).get("storage", "0"))
        if size >= want:
            fits.append((size, pv["metadata"]["name"]))
    return min(fits)[1] if fits else None


class EbsCsi(_Base):
    """The EBS CSI controller (provision, attach, detach, delete) and the PV binder, simulated."""

    def __init__(self, api: Any, *, cluster_name: str, region: str) -> None:
        super().__init__(api, cluster_name=cluster_name, region=region)
        from kubernetes import client

        self.storage: Any = client.StorageV1Api(api)
        self._reported: set[tuple[str, str, str]] = set()  # (pod uid, pv, error code) said in an Event

    def sync_once(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self.kube.list(kube.STORAGE_CLASS)}
        default = next(
            (
                n
                for n, c in classes.items()
                if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
            ),
            None,
        )
        pods = self.kube.list(kube.POD)
        claims = self.kube.list(kube.PVC)
        pvs = self.kube.list(kube.PV)
        nodes = {n["metadata"]["name"]: n for n in self.nodes()}
        for claim in claims:
            self._bind(claim, pods, pvs, classes, default, nodes)
        # again: binding above changed both
        claims = self.kube.list(kube.PVC)
        pvs = self.kube.list(kube.PV)
        self._reclaim(pvs, {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in claims})
        self._attach(pods, claims, pvs, nodes)

    # -- binding and provisioning -----------------------------------------------------------------------

    def _bind(
        self,
        claim: dict[str, Any],
        pods: list[dict[str, Any]],
        pvs: list[dict[str, Any]],
        classes: dict[str, dict[str, Any]],
        default: str | None,
        nodes: dict[str, dict[str, Any]],
    ) -> None:
        meta, spec = claim["metadata"], claim.get("spec") or {}
        if spec.get("volumeName") or (claim.get("status") or {}).get("phase") == "Bound":
            return
        static = pick_static_pv(claim, pvs, default)
        if static is not None:
            self._bind_pair(claim, static)
            return
        class_name = spec.get("storageClassName", default)
        storage_class = classes.get(class_name or "")
        if storage_class is None or storage_class.get("provisioner") != EBS_DRIVER:
            return
        node_name = (meta.get("annotations") or {}).get(SELECTED_NODE) or self._consumer_node(claim, pods)
        if storage_class.get("volumeBindingMode") == "WaitForFirstConsumer" and not node_name:
            return  # no pod uses it yet: it stays Pending, as on AWS
        node = nodes.get(node_name or "")
        zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
        if zone is None:
            zones = [z for n in nodes.values() if (z := (n["metadata"].get("labels") or {}).get(ZONE_LABEL))]
            if not zones:
                return
            zone = sorted(zones)[0]
        self._provision(claim, storage_class, zone)

    def _consumer_node(self, claim: Mapping[str, Any], pods: list[dict[str, Any]]) -> str | None:
        """The node of the first scheduled pod that mounts ``claim`` (what the scheduler would select)."""
        for pod in pods:
            if pod["metadata"].get("namespace") != claim["metadata"]["namespace"]:
                continue
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                ref = volume.get("persistentVolumeClaim") or {}
                if ref.get("claimName") == claim["metadata"]["name"] and pod["spec"].get("nodeName"):
                    return str(pod["spec"]["nodeName"])
        return None

    def _provision(self, claim: dict[str, Any], storage_class: Mapping[str, Any], zone: str) -> None:
        meta = claim["metadata"]
        params = storage_class.get("parameters") or {}
        pv_name = f"pvc-{meta['uid']}"
        size = _quantity_gib(
            ((claim["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        )
        tags = {
            **self.owned,
            "CSIVolumeName": pv_name,
            "ebs.csi.aws.com/cluster": "true",
            "kubernetes.io/created-for/pv/name": pv_name,
            "kubernetes.io/created-for/pvc/name": meta["name"],
            "kubernetes.io/created-for/pvc/namespace": meta["namespace"],
            "Name": f"{self.cluster}-dynamic-{pv_name}",
        }
        encrypted = str(params.get("encrypted", "true")).lower() == "true"
        volume = self.ec2.create_volume(
            AvailabilityZone=zone,
            Size=size,
            VolumeType=params.get("type", "gp3"),
            Encrypted=encrypted,
            ClientToken=pv_name[:64],
            TagSpecifications=[
                {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        )
        volume_id = str(volume["VolumeId"])
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {"pv.kubernetes.io/provisioned-by": EBS_DRIVER},
                "finalizers": ["kubernetes.io/pv-protection"],
            },
            "spec": {
                "capacity": {"storage": f"{size}Gi"},
                "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
                "storageClassName": storage_class["metadata"]["name"],
                "volumeMode": "Filesystem",
                "csi": {
                    "driver": EBS_DRIVER,
                    "volumeHandle": volume_id,
                    "fsType": params.get("csi.storage.k8s.io/fstype", "ext4"),
                },
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": EBS_ZONE_KEY, "operator": "In", "values": [zone]}]}
                        ]
                    }
                },
            },
        }
        self.core.create_persistent_volume(pv)
        log.info(
            "claim %s/%s: provisioned %s (%s GiB in %s) as %s",
            meta["namespace"],
            meta["name"],
            volume_id,
            size,
            zone,
            pv_name,
        )
        self._bind_pair(claim, pv_name)

    def _bind_pair(self, claim: Mapping[str, Any], pv_name: str) -> None:
        meta = claim["metadata"]
        self.core.patch_persistent_volume(
            pv_name,
            {
                "spec": {
                    "claimRef": {
                        "kind": "PersistentVolumeClaim",
                        "apiVersion": "v1",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                }
            },
        )
        self.core.patch_persistent_volume_status(pv_name, {"status": {"phase": "Bound"}})
        self.core.patch_namespaced_persistent_volume_claim(
            meta["name"],
            meta["namespace"],
            {
                "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                "spec": {"volumeName": pv_name},
            },
        )
        pv = _json(self.core.read_persistent_volume(pv_name, _preload_content=False))
        self.core.patch_namespaced_persistent_volume_claim_status(
            meta["name"],
            meta["namespace"],
            {
                "status": {
                    "phase": "Bound",
                    "accessModes": pv["spec"].get("accessModes"),
                    "capacity": pv["spec"].get("capacity"),
                }
            },
        )

    # -- reclaiming -------------------------------------------------------------------------------------

    def _reclaim(self, pvs: list[dict[str, Any]], claims: set[tuple[str, str]]) -> None:
        for pv in pvs:
            ref = (pv.get("spec") or {}).get("claimRef")
            if not ref or (ref.get("namespace"), ref.get("name")) in claims:
                continue
            name = pv["metadata"]["name"]
            policy = pv["spec"].get("persistentVolumeReclaimPolicy", "Delete")
            volume_id = ((pv["spec"].get("csi") or {}).get("volumeHandle")) or ""
            if policy == "Retain":
                if (pv.get("status") or {}).get("phase") != "Released":
                    self.core.patch_persistent_volume_status(name, {"status": {"phase": "Released"}})
                    log.info("PV %s released (Retain): volume %s kept", name, volume_id)
                continue
            if volume_id and not self._detached(volume_id):
                continue  # deleted once detached
            if volume_id:
                with contextlib.suppress(Exception):
                    self.ec2.delete_volume(VolumeId=volume_id)
            self.core.patch_persistent_volume(name, {"metadata": {"finalizers": None}})
            with contextlib.suppress(Exception):
                self.core.delete_persistent_volume(name)
            log.info("PV %s deleted with its volume %s (reclaim policy Delete)", name, volume_id)

    def _detached(self, volume_id: str) -> bool:
        volumes = self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        if not volumes:
            return True
        attachments = volumes[0].get("Attachments") or []
        for attachment in attachments:
            if attachment.get("State") in ("attached", "attaching"):
                self.ec2.detach_volume(VolumeId=volume_id, InstanceId=attachment["InstanceId"])
                return False
        return True

    # -- attaching --------------------------------------------------------------------------------------

    def _attach(
        self,
        pods: list[dict[str, Any]],
        claims: list[dict[str, Any]],
        pvs: list[dict[str, Any]],
        nodes: dict[str, dict[str, Any]],
    ) -> None:
        """Attach each EBS volume to the instance of the node whose running pod uses it; detach the rest."""
        pv_of_claim = {
            (c["metadata"]["namespace"], c["metadata"]["name"]): (c.get("spec") or {}).get("volumeName")
            for c in claims
        }
        volume_of_pv = {
            pv["metadata"]["name"]: (pv["spec"].get("csi") or {}).get("volumeHandle")
            for pv in pvs
            if (pv["spec"].get("csi") or {}).get("driver") == EBS_DRIVER
        }
        wanted: dict[str, tuple[str, str, dict[str, Any]]] = {}  # volume id → (node name, pv name, pod)
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name or pod["metadata"].get("deletionTimestamp"):
                continue
            for volume in pod["spec"].get("volumes") or []:
                ref = volume.get("persistentVolumeClaim") or {}
                pv_name = pv_of_claim.get((pod["metadata"]["namespace"], ref.get("claimName")))
                volume_id = volume_of_pv.get(pv_name or "")
                if volume_id and pv_name:
                    wanted[volume_id] = (node_name, pv_name, pod)
        ids = sorted(str(v) for v in set(volume_of_pv.values()) if v)
        if not ids:
            return
        described = {
            v["VolumeId"]: v
            for v in self.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": ids}])["Volumes"]
        }
        for volume_id, volume in described.items():
            attached = [
                a for a in volume.get("Attachments") or [] if a.get("State") in ("attached", "attaching")
            ]
            target = wanted.get(volume_id)
            instance = _instance_of(nodes.get(target[0], {})) if target else None
            for attachment in attached:
                if attachment["InstanceId"] != instance:
                    self.ec2.detach_volume(VolumeId=volume_id, InstanceId=attachment["InstanceId"])
                    self._record_attachment(volume_id, None, None)
                    log.info("volume %s detached from %s", volume_id, attachment["InstanceId"])
            if target and instance and not any(a["InstanceId"] == instance for a in attached):
                if attached:
                    continue  # wait for the detach to finish first
                try:
                    self.ec2.attach_volume(
                        VolumeId=volume_id, InstanceId=instance, Device=self._free_device(instance)
                    )
                except ClientError as err:  # said where kubectl describe pod shows it, as the real one does
                    self._attach_failed(target[2], target[1], err)
                    continue
                self._record_attachment(volume_id, target[1], target[0])
                log.info("volume %s attached to %s (node %s)", volume_id, instance, target[0])

    def _attach_failed(self, pod: Mapping[str, Any], pv_name: str, err: ClientError) -> None:
        """A Warning Event ``FailedAttachVolume`` on the pod, once per pod, volume and error code."""
        error = err.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        meta = pod["metadata"]
        key = (str(meta.get("uid")), pv_name, code)
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("attaching the volume of PV %s for pod %s failed: %s", pv_name, meta.get("name"), code)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with contextlib.suppress(Exception):
            self.core.create_namespaced_event(
                meta["namespace"],
                {
                    "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                    "involvedObject": {
                        "kind": "Pod",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta.get("uid"),
                        "apiVersion": "v1",
                    },
                    "reason": "FailedAttachVolume",
                    "message": f'AttachVolume.Attach failed for volume "{pv_name}" : {code}: {message}',
                    "type": "Warning",
                    "source": {"component": "attachdetach-controller"},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                },
            )

    def _free_device(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        used = {
            m["DeviceName"]
            for r in reservations
            for i in r["Instances"]
            for m in i.get("BlockDeviceMappings") or []
        }
        for letter in "bcdefghijklmnopqrstuvwxyz":
            device = f"/dev/xvdb{letter}"
            if device not in used:
                return device
        raise RuntimeError(f"instance {instance_id} has no free device name")

    def _record_attachment(self, volume_id: str, pv_name: str | None, node_name: str | None) -> None:
        """Keep a VolumeAttachment object per attached volume, as the attach/detach controller does."""
        name = f"csi-{volume_id}"
        if pv_name is None or node_name is None:
            with contextlib.suppress(Exception):
                self.storage.delete_volume_attachment(name)
            return
        body = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "VolumeAttachment",
            "metadata": {"name": name},
            "spec": {
                "attacher": EBS_DRIVER,
                "nodeName": node_name,
                "source": {"persistentVolumeName": pv_name},
            },
        }
        with contextlib.suppress(Exception):
            self.storage.delete_volume_attachment(name)
        self.storage.create_volume_attachment(body)
        with contextlib.suppress(Exception):
            self.storage.patch_volume_attachment_status(name, {"status": {"attached": True}})


class CloudControllers:
    """Both simulated controllers of one cluster, looping in a thread until stopped."""

    def __init__(self, api: Any, *, cluster_name: str, region: str) -> None:
        self.parts: list[ServiceLoadBalancers | EbsCsi] = [
            ServiceLoadBalancers(api, cluster_name=cluster_name, region=region),
            EbsCsi(api, cluster_name=cluster_name, region=region),
        ]

    def sync_once(self) -> None:
        for part in self.parts:
            part.sync_once()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            started = time.monotonic()
            for part in self.parts:
                try:
                    part.sync_once()
                except Exception as exc:  # the API or the emulator may be briefly away: try again next round
                    log.debug("%s: %s", type(part).__name__, exc)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
