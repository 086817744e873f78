"""The sandbox's simulated cloud controllers, against the AWS emulator and the Kubernetes API emulator.

Service of type LoadBalancer → a classic ELB + security group in the emulator, its DNS name in the Service's
status, gone with the Service; EBS CSI → volumes provisioned in the zone of the pod's node (encrypted,
tagged), bound, attached to that node's instance, detached, deleted (Delete) or kept (Retain); a
pre-provisioned PV is bound to a fitting claim.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from kubernetes import client

from pykops.sandbox.cloudsim import EbsCsi, ServiceLoadBalancers, _quantity_gib, elb_name, pick_static_pv

REGION = "eu-west-1"


def test_quantities_round_up_to_gib() -> None:
    assert [_quantity_gib(q) for q in ("1Gi", "500Mi", "10G", "2Ti", "1")] == [1, 1, 10, 2048, 1]


def test_static_pv_choice_is_the_smallest_that_fits() -> None:
    def pv(name: str, size: str, cls: str = "gp3", phase: str = "Available") -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": cls,
            },
            "status": {"phase": phase},
        }

    claim = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}
    pvs = [pv("small", "1Gi"), pv("big", "10Gi"), pv("fit", "3Gi"), pv("bound", "2Gi", phase="Bound")]
    assert pick_static_pv(claim, pvs, "gp3") == "fit"
    assert pick_static_pv(claim, pvs, "other") is None
    assert pick_static_pv({**claim, "spec": {**claim["spec"], "storageClassName": "gp3"}}, pvs, None) == "fit"


def _cluster(ec2: Any) -> tuple[str, dict[str, str]]:
    """A cluster's VPC, a tagged public subnet and an instance per zone: (name, zone → instance)."""
    name = f"sim-{uuid.uuid4().hex[:6]}.k8s.local"
    owned = [
        {"Key": f"kubernetes.io/cluster/{name}", "Value": "owned"},
        {"Key": "KubernetesCluster", "Value": name},
    ]
    vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances = {}
    for i, zone in enumerate(("eu-west-1a", "eu-west-1b")):
        subnet = ec2.create_subnet(
            VpcId=vpc,
            CidrBlock=f"172.20.{i * 32}.0/19",
            AvailabilityZone=zone,
            TagSpecifications=[
                {"ResourceType": "subnet", "Tags": [*owned, {"Key": "kubernetes.io/role/elb", "Value": "1"}]}
            ],
        )["Subnet"]["SubnetId"]
        run = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.medium", SubnetId=subnet
        )
        instances[zone] = run["Instances"][0]["InstanceId"]
    return name, instances


def _node(core: Any, name: str, zone: str, instance: str) -> None:
    core.create_node(
        {
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
            "spec": {"providerID": f"aws:///{zone}/{instance}"},
        }
    )


def test_service_load_balancer_lifecycle(aws_env: Any, kube_api: Any) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    elb = boto3.client("elb", region_name=REGION)
    name, instances = _cluster(ec2)
    api = kube_api.admin_client()
    core = client.CoreV1Api(api)
    for zone, instance in instances.items():
        _node(core, f"node-{zone}", zone, instance)
    core.create_namespace({"metadata": {"name": "demo"}})
    svc = core.create_namespaced_service(
        "demo",
        {
            "metadata": {"name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
    )
    controller = ServiceLoadBalancers(api, cluster_name=name, region=REGION)
    controller.sync_once()
    lb_name = elb_name(svc.metadata.uid)
    described = elb.describe_load_balancers(LoadBalancerNames=[lb_name])["LoadBalancerDescriptions"][0]
    status = core.read_namespaced_service("web", "demo").status.load_balancer.ingress
    assert [i.hostname for i in status] == [described["DNSName"]]
    assert sorted(i["InstanceId"] for i in described["Instances"]) == sorted(instances.values())
    tags = {
        t["Key"]: t["Value"]
        for t in elb.describe_tags(LoadBalancerNames=[lb_name])["TagDescriptions"][0]["Tags"]
    }
    assert (
        tags[f"kubernetes.io/cluster/{name}"] == "owned" and tags["kubernetes.io/service-name"] == "demo/web"
    )
    (group,) = described["SecurityGroups"]
    rules = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(80, 80)]
    controller.sync_once()  # idempotent: still one load balancer
    assert len(elb.describe_load_balancers(LoadBalancerNames=[lb_name])["LoadBalancerDescriptions"]) == 1

    core.delete_namespaced_service("web", "demo")
    controller.sync_once()
    names = [d["LoadBalancerName"] for d in elb.describe_load_balancers()["LoadBalancerDescriptions"]]
    assert lb_name not in names
    assert not ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group]}])[
        "SecurityGroups"
    ]


def _storage_class(storage: Any, name: str, reclaim: str, default: bool = False) -> None:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    storage.create_storage_class(
        {
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": "ebs.csi.aws.com",
            "parameters": {"type": "gp3", "encrypted": "true"},
            "reclaimPolicy": reclaim,
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    )


def _claim(core: Any, name: str, cls: str | None = None, size: str = "1Gi") -> None:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls:
        spec["storageClassName"] = cls
    core.create_namespaced_persistent_volume_claim("demo", {"metadata": {"name": name}, "spec": spec})


def _static_pv(core: Any, name: str, volume_id: str, **extra: str) -> None:
    """A pre-provisioned 5 GiB gp3 PersistentVolume of the EBS CSI driver for ``volume_id``."""
    spec = {
        "capacity": {"storage": "5Gi"},
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "gp3",
        "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": volume_id},
        **extra,
    }
    core.create_persistent_volume({"metadata": {"name": name}, "spec": spec})


def _pod(core: Any, name: str, claim: str, node: str) -> None:
    core.create_namespaced_pod(
        "demo",
        {
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            },
        },
    )


@pytest.mark.parametrize("reclaim", ["Delete", "Retain"])
def test_dynamic_volume_follows_its_pod_and_its_reclaim_policy(
    aws_env: Any, kube_api: Any, reclaim: str
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    name, instances = _cluster(ec2)
    api = kube_api.admin_client()
    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)
    for zone, instance in instances.items():
        _node(core, f"node-{zone}", zone, instance)
    core.create_namespace({"metadata": {"name": "demo"}})
    _storage_class(storage, "gp3", reclaim, default=True)
    _claim(core, "data")  # no class named: the default one
    csi = EbsCsi(api, cluster_name=name, region=REGION)
    csi.sync_once()
    assert (
        core.read_namespaced_persistent_volume_claim("data", "demo").spec.volume_name is None
    )  # no consumer

    _pod(core, "writer", "data", "node-eu-west-1b")
    csi.sync_once()
    claim = core.read_namespaced_persistent_volume_claim("data", "demo")
    assert claim.status.phase == "Bound"
    pv = core.read_persistent_volume(claim.spec.volume_name)
    volume_id = pv.spec.csi.volume_handle
    assert pv.spec.persistent_volume_reclaim_policy == reclaim
    zone_term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert zone_term.values == ["eu-west-1b"]
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert (
        volume["AvailabilityZone"] == "eu-west-1b" and volume["Encrypted"] and volume["VolumeType"] == "gp3"
    )
    tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
    assert tags[f"kubernetes.io/cluster/{name}"] == "owned"
    assert tags["kubernetes.io/created-for/pvc/name"] == "data"
    attachments = [a for a in volume.get("Attachments") or [] if a["State"] == "attached"]
    assert [a["InstanceId"] for a in attachments] == [instances["eu-west-1b"]]
    assert storage.read_volume_attachment(f"csi-{volume_id}").spec.node_name == "node-eu-west-1b"

    core.delete_namespaced_pod("writer", "demo")
    csi.sync_once()
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert not [a for a in volume.get("Attachments") or [] if a["State"] == "attached"]

    _pod(core, "writer2", "data", "node-eu-west-1b")  # the same zone: the same volume comes back
    csi.sync_once()
    assert core.read_namespaced_persistent_volume_claim("data", "demo").spec.volume_name == pv.metadata.name
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert [a["InstanceId"] for a in volume["Attachments"] if a["State"] == "attached"] == [
        instances["eu-west-1b"]
    ]
    core.delete_namespaced_pod("writer2", "demo")
    core.delete_namespaced_persistent_volume_claim("data", "demo")
    csi.sync_once()
    csi.sync_once()
    remaining = ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])["Volumes"]
    if reclaim == "Delete":
        assert remaining == []
        assert [p.metadata.name for p in core.list_persistent_volume().items] == []
    else:
        assert [v["VolumeId"] for v in remaining] == [volume_id]
        assert core.read_persistent_volume(pv.metadata.name).status.phase == "Released"


def test_pre_provisioned_volume_is_bound_to_a_fitting_claim(aws_env: Any, kube_api: Any) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    name, _ = _cluster(ec2)
    volume_id = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=5, Encrypted=True)["VolumeId"]
    api = kube_api.admin_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "demo"}})
    _static_pv(core, "manual", volume_id, persistentVolumeReclaimPolicy="Retain")
    _claim(core, "big", cls="gp3", size="10Gi")  # does not fit
    _claim(core, "small", cls="gp3", size="2Gi")
    EbsCsi(api, cluster_name=name, region=REGION).sync_once()
    assert core.read_namespaced_persistent_volume_claim("small", "demo").spec.volume_name == "manual"
    assert core.read_namespaced_persistent_volume_claim("big", "demo").spec.volume_name is None
    assert core.read_persistent_volume("manual").spec.claim_ref.name == "small"


def test_a_refused_attach_is_a_warning_event_on_the_pod(aws_env: Any, kube_api: Any) -> None:
    """A volume in eu-west-1b for a pod on an eu-west-1a node: AWS refuses the attach (zone mismatch); the
    simulated attach/detach controller says so once, in a FailedAttachVolume Event that describe shows."""
    ec2 = boto3.client("ec2", region_name=REGION)
    name, instances = _cluster(ec2)
    volume_id = ec2.create_volume(AvailabilityZone="eu-west-1b", Size=5, Encrypted=True)["VolumeId"]
    api = kube_api.admin_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "demo"}})
    _node(core, "node-a", "eu-west-1a", instances["eu-west-1a"])
    _static_pv(core, "elsewhere", volume_id)
    _claim(core, "data", cls="gp3", size="5Gi")
    _pod(core, "writer", "data", "node-a")
    csi = EbsCsi(api, cluster_name=name, region=REGION)
    for _ in range(3):
        csi.sync_once()
    events = core.list_namespaced_event("demo").items
    failed = [e for e in events if e.reason == "FailedAttachVolume"]
    assert len(failed) == 1 and failed[0].type == "Warning" and failed[0].involved_object.name == "writer"
    assert 'volume "elsewhere"' in failed[0].message and "InvalidVolume.ZoneMismatch" in failed[0].message
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"] == []
