"""Compute kinds: SSH key pairs, launch templates, auto scaling groups and the etcd EBS volumes.

Each kind finds every resource of the cluster in a constant number of calls (see ``find`` of each), and
creates, updates and deletes one resource. Tags are written exactly as the model gives them (the model puts
the ownership tags that ``find`` relies on); ``find`` reports tags restricted to the keys the model sets.

The small helpers at the top are shared with the IAM and load balancer kinds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from pykops.cloud.aws.cloud import TAG_CLUSTER, TAG_NAME, cluster_owned_tag, error_code
from pykops.cloud.aws.images import root_device_name
from pykops.engine.types import Actual, FieldChange, Kind, Resource, RetryableError
from pykops.errors import PykopsError

# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the kinds of this package


def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    """Every item under ``key`` of every page of ``operation`` (one call per page)."""
    items: list[Any] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key) or [])
    return items


def is_owned(tags: Mapping[str, str], cluster: str) -> bool:
    """Whether ``tags`` mark a resource of ``cluster`` (``KubernetesCluster`` or the cluster's owned tag)."""
    return tags.get(TAG_CLUSTER) == cluster or cluster_owned_tag(cluster) in tags


def project(props: dict[str, Any], desired: Resource | None, nested: Iterable[str] = ()) -> dict[str, Any]:
    """Shape actual props like the desired ones: the desired keys only; ``tags`` restricted to the desired
    tag keys (a missing tag is absent); each dict prop named in ``nested`` restricted to the desired sub-keys
    (a missing one is None). With no desired resource (a resource to delete), every prop is kept."""
    if desired is None:
        return props
    nested_keys = set(nested)
    shaped: dict[str, Any] = {}
    for key, want in desired.props.items():
        have = props.get(key)
        if key == "tags" and isinstance(want, Mapping) and isinstance(have, Mapping):
            have = {k: have[k] for k in want if k in have}
        elif key in nested_keys and isinstance(want, Mapping) and isinstance(have, Mapping):
            have = {k: have.get(k) for k in want}
        shaped[key] = have
    return shaped


def tags_to_set(actual: Mapping[str, str] | None, desired: Mapping[str, str] | None) -> dict[str, str]:
    """The desired tags that are missing or different on the actual resource (extra tags are left alone)."""
    have = actual or {}
    return {k: v for k, v in (desired or {}).items() if have.get(k) != v}


def changed_props(changes: Iterable[FieldChange]) -> set[str]:
    """The top-level prop names touched by ``changes`` (``root_volume.size`` -> ``root_volume``)."""
    return {c.path.split(".", 1)[0].split("[", 1)[0] for c in changes}


# Mixed into every idempotency token: a retried create in this run reuses its token (AWS answers with the
# resource the first attempt made), while a later run that recreates a deleted resource with the same content
# does not get the deleted one back (EC2 remembers client tokens for hours after the resource is gone).
_RUN_NONCE = secrets.token_hex(8)


def client_token(*parts: Any) -> str:
    """An idempotency token (64 hex characters): the same for the same content within one pykops run."""
    text = json.dumps([_RUN_NONCE, *parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _by_name(desired: list[Resource]) -> dict[str, Resource]:
    return {r.name: r for r in desired}


def _create_ec2_tags(cloud: Any, resource_id: str, tags: dict[str, str]) -> None:
    if tags:
        cloud.ec2.create_tags(Resources=[resource_id], Tags=cloud.tag_list(tags))


# ---------------------------------------------------------------------------------------------------------
# SSHKey


def _key_body(public_key: Any) -> tuple[str, ...]:
    """The comparable part of an OpenSSH public key: type and base64 body (AWS adds or drops the comment)."""
    return tuple(str(public_key or "").split()[:2])


class SSHKey:
    """An EC2 key pair imported from the cluster's SSH public key; named ``kubernetes.<cluster>-<fp>``.

    find: one ``DescribeKeyPairs`` (cluster tag filter, ``IncludePublicKey``).
    """

    kind: ClassVar[str] = "SSHKey"
    immutable: ClassVar[frozenset[str]] = frozenset({"public_key"})
    replaceable: ClassVar[bool] = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = _by_name(desired)
        response = cloud.ec2.describe_key_pairs(Filters=cloud.cluster_filter(), IncludePublicKey=True)
        found: list[Actual] = []
        for pair in response.get("KeyPairs", []):
            tags = cloud.tag_dict(pair.get("Tags"))
            if not is_owned(tags, cloud.cluster_name):
                continue
            name = str(pair["KeyName"])
            want = wanted.get(name)
            public_key = pair.get("PublicKey")
            if want is not None and _key_body(public_key) == _key_body(want.props.get("public_key")):
                public_key = want.props.get("public_key")  # same key; AWS' comment may differ
            props = {"public_key": public_key, "tags": tags}
            attrs = {"id": str(pair["KeyPairId"]), "name": name}
            found.append(Actual(self.kind, name, attrs, project(props, want)))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "KeyName": desired.name,
            "PublicKeyMaterial": str(props["public_key"]).encode(),
        }
        if props.get("tags"):
            kwargs["TagSpecifications"] = cloud.tag_specifications("key-pair", props["tags"])
        try:
            response = cloud.ec2.import_key_pair(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "InvalidKeyPair.Duplicate":
                raise PykopsError(
                    f"EC2 key pair {desired.name!r} already exists but is not tagged for cluster "
                    f"{cloud.cluster_name}: delete it or tag it {cluster_owned_tag(cloud.cluster_name)}=owned"
                ) from exc
            raise
        return {"id": str(response["KeyPairId"]), "name": desired.name}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        _create_ec2_tags(cloud, actual.id, tags_to_set(actual.props.get("tags"), props.get("tags")))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.ec2.delete_key_pair(KeyPairId=actual.id)
        except ClientError as exc:
            if error_code(exc) != "InvalidKeyPair.NotFound":
                raise


# ---------------------------------------------------------------------------------------------------------
# LaunchTemplate

_LT_NOT_FOUND = frozenset(
    {
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidLaunchTemplateId.Malformed",
    }
)


def _launch_template_data(cloud: Any, props: dict[str, Any]) -> dict[str, Any]:
    """The full ``LaunchTemplateData`` for the desired props (Refs resolved)."""
    data: dict[str, Any] = {"ImageId": props["image_id"], "InstanceType": props["instance_type"]}
    if props.get("key_name"):
        data["KeyName"] = props["key_name"]
    if props.get("iam_instance_profile"):
        data["IamInstanceProfile"] = {"Arn": props["iam_instance_profile"]}
    if props.get("user_data"):
        data["UserData"] = base64.b64encode(str(props["user_data"]).encode()).decode()
    root = props.get("root_volume")
    if root:
        ebs: dict[str, Any] = {"DeleteOnTermination": True}
        for key, field in (("size", "VolumeSize"), ("type", "VolumeType"), ("encrypted", "Encrypted")):
            if root.get(key) is not None:
                ebs[field] = root[key]
        for key, field in (("iops", "Iops"), ("throughput", "Throughput")):
            if root.get(key) is not None:
                ebs[field] = root[key]
        device = root.get("device_name") or root_device_name(cloud, str(props["image_id"]))
        data["BlockDeviceMappings"] = [{"DeviceName": device, "Ebs": ebs}]
    metadata = props.get("metadata_options")
    if metadata:
        options = {
            "HttpTokens": metadata.get("http_tokens"),
            "HttpPutResponseHopLimit": metadata.get("http_put_response_hop_limit"),
            "HttpEndpoint": metadata.get("http_endpoint"),
        }
        data["MetadataOptions"] = {k: v for k, v in options.items() if v is not None}
    groups = sorted(props.get("security_groups") or [])
    if props.get("associate_public_ip"):
        data["NetworkInterfaces"] = [
            {
                "DeviceIndex": 0,
                "AssociatePublicIpAddress": True,
                "DeleteOnTermination": True,
                "Groups": groups,
            }
        ]
    elif groups:
        data["SecurityGroupIds"] = groups
    instance_tags = props.get("instance_tags") or {}
    if instance_tags:
        data["TagSpecifications"] = [
            {"ResourceType": kind, "Tags": cloud.tag_list(instance_tags)} for kind in ("instance", "volume")
        ]
    return data


def _decode_user_data(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return str(value)


def _launch_template_props(data: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """The props (desired shape) described by a version's ``LaunchTemplateData``."""
    mappings = data.get("BlockDeviceMappings") or []
    root_volume: dict[str, Any] | None = None
    if mappings:
        ebs = mappings[0].get("Ebs") or {}
        root_volume = {
            "device_name": mappings[0].get("DeviceName"),
            "size": ebs.get("VolumeSize"),
            "type": ebs.get("VolumeType"),
            "encrypted": ebs.get("Encrypted"),
            "iops": ebs.get("Iops"),
            "throughput": ebs.get("Throughput"),
        }
    interfaces = data.get("NetworkInterfaces") or []
    if interfaces:
        groups = interfaces[0].get("Groups") or []
        public = bool(interfaces[0].get("AssociatePublicIpAddress", False))
    else:
        groups = data.get("SecurityGroupIds") or []
        public = False
    options = data.get("MetadataOptions")
    metadata = None
    if options is not None:
        metadata = {
            "http_tokens": options.get("HttpTokens"),
            "http_put_response_hop_limit": options.get("HttpPutResponseHopLimit"),
            "http_endpoint": options.get("HttpEndpoint"),
        }
    instance_tags: dict[str, str] = {}
    for spec in data.get("TagSpecifications") or []:
        if spec.get("ResourceType") == "instance":
            instance_tags = {t["Key"]: t["Value"] for t in spec.get("Tags") or []}
    profile = data.get("IamInstanceProfile") or {}
    return {
        "image_id": data.get("ImageId"),
        "instance_type": data.get("InstanceType"),
        "key_name": data.get("KeyName"),
        "security_groups": sorted(groups),
        "iam_instance_profile": profile.get("Arn") or profile.get("Name"),
        "user_data": _decode_user_data(data.get("UserData")),
        "root_volume": root_volume,
        "metadata_options": metadata,
        "associate_public_ip": public,
        "instance_tags": instance_tags,
        "tags": tags,
    }


class LaunchTemplate:
    """The launch template of an instance group, named ``<ig>.<cluster>``; attr ``version`` is the default.

    find: one ``DescribeLaunchTemplates`` (cluster tag filter, pages of 200) + one
    ``DescribeLaunchTemplateVersions`` with ``Versions=["$Default"]`` and no template: the default version of
    every template of the account and region, in pages of 200 (plus one call per cluster template whose
    default version was missing from that answer: only a template created between the two calls).
    update: a new version with the full data, made the default. It is based on the current default
    (``SourceVersion``) unless the new data drops a top-level field the current one has (a key pair removed,
    a switch between ``NetworkInterfaces`` and ``SecurityGroupIds``): AWS would carry that field over.
    A ``root_volume.device_name`` of None means "the image's root device" (looked up at create/update) and
    is not compared; a ``user_data`` of None or ``""`` means none.
    """

    kind: ClassVar[str] = "LaunchTemplate"
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = False
    unordered: ClassVar[frozenset[str]] = frozenset({"security_groups"})
    update_attrs: ClassVar[frozenset[str]] = frozenset({"version"})  # an update makes a new default version
    #: MaxResults of the two describe calls (AWS allows up to 200).
    page_size: ClassVar[int] = 200

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = _by_name(desired)
        templates = [
            t
            for t in paginate(
                cloud.ec2,
                "describe_launch_templates",
                "LaunchTemplates",
                Filters=cloud.cluster_filter(),
                PaginationConfig={"PageSize": self.page_size},
            )
            if is_owned(cloud.tag_dict(t.get("Tags")), cloud.cluster_name)
        ]
        if not templates:
            return []
        ids = {str(t["LaunchTemplateId"]) for t in templates}
        defaults: dict[str, dict[str, Any]] = {}
        for version in paginate(
            cloud.ec2,
            "describe_launch_template_versions",
            "LaunchTemplateVersions",
            Versions=["$Default"],
            PaginationConfig={"PageSize": self.page_size},
        ):
            if version.get("LaunchTemplateId") in ids and version.get("DefaultVersion", True):
                defaults[str(version["LaunchTemplateId"])] = version
        found: list[Actual] = []
        for template in templates:
            template_id = str(template["LaunchTemplateId"])
            version = defaults.get(template_id)
            if version is None:
                answer = cloud.ec2.describe_launch_template_versions(
                    LaunchTemplateId=template_id, Versions=["$Default"]
                )
                version = (answer.get("LaunchTemplateVersions") or [{}])[0]
            name = str(template["LaunchTemplateName"])
            want = wanted.get(name)
            props = _launch_template_props(
                version.get("LaunchTemplateData") or {}, cloud.tag_dict(template.get("Tags"))
            )
            props = project(props, want, nested=("root_volume", "metadata_options"))
            desired_root = want.props.get("root_volume") if want is not None else None
            root = props.get("root_volume")
            if (
                isinstance(desired_root, Mapping)
                and desired_root.get("device_name") is None
                and isinstance(root, dict)
            ):
                root["device_name"] = None  # "the image's root device": not compared
            if want is not None and not want.props.get("user_data") and not props.get("user_data"):
                props["user_data"] = want.props.get("user_data")  # None and "" both mean no user data
            attrs = {
                "id": template_id,
                "name": name,
                "version": str(version.get("VersionNumber", template.get("DefaultVersionNumber"))),
            }
            found.append(Actual(self.kind, name, attrs, props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        data = _launch_template_data(cloud, props)
        tags = props.get("tags") or {}
        kwargs: dict[str, Any] = {
            "LaunchTemplateName": desired.name,
            "LaunchTemplateData": data,
            "ClientToken": client_token(cloud.cluster_name, desired.name, data, tags),
        }
        if tags:
            kwargs["TagSpecifications"] = cloud.tag_specifications("launch-template", tags)
        try:
            response = cloud.ec2.create_launch_template(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "InvalidLaunchTemplateName.AlreadyExistsException":
                raise PykopsError(
                    f"launch template {desired.name!r} already exists but is not tagged for cluster "
                    f"{cloud.cluster_name}: delete or rename it"
                ) from exc
            raise
        template = response["LaunchTemplate"]
        return {
            "id": str(template["LaunchTemplateId"]),
            "name": desired.name,
            "version": str(template["DefaultVersionNumber"]),
        }

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        attrs = dict(actual.attrs)
        _create_ec2_tags(cloud, actual.id, tags_to_set(actual.props.get("tags"), props.get("tags")))
        if changes and not changed_props(changes) - {"tags"}:
            return attrs  # only tags changed: no new version
        if not changes and _normalized(props) == _normalized(actual.props):
            return attrs
        data = _launch_template_data(cloud, props)
        kwargs: dict[str, Any] = {"LaunchTemplateId": actual.id, "LaunchTemplateData": data}
        current = _current_data_fields(actual.props)
        if current <= set(data):
            kwargs["SourceVersion"] = str(actual.attrs["version"])
        kwargs["ClientToken"] = client_token(
            cloud.cluster_name, actual.name, data, kwargs.get("SourceVersion")
        )
        response = cloud.ec2.create_launch_template_version(**kwargs)
        version = str(response["LaunchTemplateVersion"]["VersionNumber"])
        cloud.ec2.modify_launch_template(LaunchTemplateId=actual.id, DefaultVersion=version)
        attrs["version"] = version
        return attrs

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.ec2.delete_launch_template(LaunchTemplateId=actual.id)
        except ClientError as exc:
            if error_code(exc) not in _LT_NOT_FOUND:
                raise


def _normalized(props: dict[str, Any]) -> dict[str, Any]:
    shaped = {k: v for k, v in props.items() if k != "tags"}
    shaped["security_groups"] = sorted(shaped.get("security_groups") or [])
    return shaped


def _current_data_fields(props: dict[str, Any]) -> set[str]:
    """The top-level ``LaunchTemplateData`` fields the found version has (as far as its props show)."""
    fields = {"ImageId", "InstanceType"}
    if props.get("key_name"):
        fields.add("KeyName")
    if props.get("iam_instance_profile"):
        fields.add("IamInstanceProfile")
    if props.get("user_data"):
        fields.add("UserData")
    if props.get("root_volume"):
        fields.add("BlockDeviceMappings")
    if props.get("metadata_options"):
        fields.add("MetadataOptions")
    if props.get("associate_public_ip"):
        fields.add("NetworkInterfaces")
    elif props.get("security_groups"):
        fields.add("SecurityGroupIds")
    if props.get("instance_tags"):
        fields.add("TagSpecifications")
    return fields


# ---------------------------------------------------------------------------------------------------------
# AutoScalingGroup


class AutoScalingGroup:
    """The auto scaling group of an instance group, named ``<ig>.<cluster>``.

    find: one ``DescribeAutoScalingGroups`` (filter ``tag-key=kubernetes.io/cluster/<cluster>``; one call
    per page of 100 groups).
    update: one ``UpdateAutoScalingGroup`` for template/version/sizes/subnets,
    ``Attach``/``DetachLoadBalancerTargetGroups`` for target groups, ``CreateOrUpdateTags`` for tags.
    delete: ``ForceDelete`` (terminates the instances), then waits until the group is gone.
    """

    kind: ClassVar[str] = "AutoScalingGroup"
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = False
    unordered: ClassVar[frozenset[str]] = frozenset({"subnets", "target_group_arns"})

    #: Bounds of the wait for a deleted group to disappear (seconds).
    delete_timeout: ClassVar[float] = 900.0
    delete_poll_initial: ClassVar[float] = 2.0
    delete_poll_max: ClassVar[float] = 15.0

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = _by_name(desired)
        groups = paginate(
            cloud.autoscaling,
            "describe_auto_scaling_groups",
            "AutoScalingGroups",
            Filters=[{"Name": "tag-key", "Values": [cluster_owned_tag(cloud.cluster_name)]}],
            PaginationConfig={"PageSize": 100},
        )
        found: list[Actual] = []
        for group in groups:
            tags = {str(t["Key"]): str(t.get("Value", "")) for t in group.get("Tags") or []}
            if not is_owned(tags, cloud.cluster_name):
                continue
            name = str(group["AutoScalingGroupName"])
            template = group.get("LaunchTemplate") or (
                (group.get("MixedInstancesPolicy") or {})
                .get("LaunchTemplate", {})
                .get("LaunchTemplateSpecification")
                or {}
            )
            props = {
                "launch_template": template.get("LaunchTemplateId"),
                "launch_template_version": template.get("Version"),
                "min_size": group.get("MinSize"),
                "max_size": group.get("MaxSize"),
                "subnets": sorted(s for s in str(group.get("VPCZoneIdentifier") or "").split(",") if s),
                "target_group_arns": sorted(group.get("TargetGroupARNs") or []),
                "tags": tags,
            }
            attrs = {"id": name, "name": name, "arn": str(group.get("AutoScalingGroupARN", ""))}
            found.append(Actual(self.kind, name, attrs, project(props, wanted.get(name))))
        return found

    @staticmethod
    def _tags(name: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
        return [
            {
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": True,
            }
            for key, value in sorted(tags.items())
        ]

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        name = desired.name
        kwargs: dict[str, Any] = {
            "AutoScalingGroupName": name,
            "LaunchTemplate": {
                "LaunchTemplateId": props["launch_template"],
                "Version": str(props.get("launch_template_version") or "$Default"),
            },
            "MinSize": props["min_size"],
            "MaxSize": props["max_size"],
            "VPCZoneIdentifier": ",".join(props.get("subnets") or []),
            "Tags": self._tags(name, props.get("tags") or {}),
        }
        if props.get("target_group_arns"):
            kwargs["TargetGroupARNs"] = list(props["target_group_arns"])
        try:
            cloud.autoscaling.create_auto_scaling_group(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "AlreadyExists":
                raise PykopsError(
                    f"auto scaling group {name!r} already exists but is not tagged for cluster "
                    f"{cloud.cluster_name}: delete or rename it"
                ) from exc
            raise
        groups = cloud.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name]).get(
            "AutoScalingGroups", []
        )
        arn = str(groups[0].get("AutoScalingGroupARN", "")) if groups else ""
        return {"id": name, "name": name, "arn": arn}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        name = actual.name
        have = actual.props
        kwargs: dict[str, Any] = {}
        if (props.get("launch_template"), str(props.get("launch_template_version"))) != (
            have.get("launch_template"),
            str(have.get("launch_template_version")),
        ):
            kwargs["LaunchTemplate"] = {
                "LaunchTemplateId": props["launch_template"],
                "Version": str(props.get("launch_template_version") or "$Default"),
            }
        if "min_size" in props and props["min_size"] != have.get("min_size"):
            kwargs["MinSize"] = props["min_size"]
        if "max_size" in props and props["max_size"] != have.get("max_size"):
            kwargs["MaxSize"] = props["max_size"]
        if "subnets" in props and sorted(props["subnets"] or []) != sorted(have.get("subnets") or []):
            kwargs["VPCZoneIdentifier"] = ",".join(props["subnets"] or [])
        if kwargs:
            cloud.autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, **kwargs)

        if "target_group_arns" in props:
            want, current = set(props["target_group_arns"] or []), set(have.get("target_group_arns") or [])
            if want - current:
                cloud.autoscaling.attach_load_balancer_target_groups(
                    AutoScalingGroupName=name, TargetGroupARNs=sorted(want - current)
                )
            if current - want:
                cloud.autoscaling.detach_load_balancer_target_groups(
                    AutoScalingGroupName=name, TargetGroupARNs=sorted(current - want)
                )
        tags = tags_to_set(have.get("tags"), props.get("tags"))
        if tags:
            cloud.autoscaling.create_or_update_tags(Tags=self._tags(name, tags))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        name = actual.name
        try:
            cloud.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        except ClientError as exc:
            if not _asg_not_found(exc):
                raise
            return
        self._wait_gone(cloud, name)

    def _wait_gone(self, cloud: Any, name: str) -> None:
        deadline = time.monotonic() + self.delete_timeout
        delay = self.delete_poll_initial
        while True:
            groups = cloud.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name]).get(
                "AutoScalingGroups", []
            )
            if not groups:
                return
            if time.monotonic() + delay > deadline:
                raise RetryableError(
                    f"auto scaling group {name} is still being deleted after {self.delete_timeout:.0f}s",
                    code="DeleteInProgress",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, self.delete_poll_max)


def _asg_not_found(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return error_code(exc) == "ValidationError" and "not found" in message


# ---------------------------------------------------------------------------------------------------------
# EBSVolume


class EBSVolume:
    """An etcd volume, named ``<member>.etcd-<main|events>.<cluster>`` (its ``Name`` tag).

    find: one ``DescribeVolumes`` (cluster tag filter; one call per page).
    update: tags; size growth, type, IOPS and throughput with one ``ModifyVolume``; shrinking is refused.
    The zone and encryption cannot change (and an etcd volume is never replaced: its data would be lost).
    """

    kind: ClassVar[str] = "EBSVolume"
    immutable: ClassVar[frozenset[str]] = frozenset({"availability_zone", "encrypted"})
    replaceable: ClassVar[bool] = False

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = _by_name(desired)
        found: list[Actual] = []
        for volume in paginate(cloud.ec2, "describe_volumes", "Volumes", Filters=cloud.cluster_filter()):
            tags = cloud.tag_dict(volume.get("Tags"))
            if not is_owned(tags, cloud.cluster_name):
                continue
            name = tags.get(TAG_NAME) or str(volume["VolumeId"])
            props = {
                "availability_zone": volume.get("AvailabilityZone"),
                "size": volume.get("Size"),
                "volume_type": volume.get("VolumeType"),
                "encrypted": volume.get("Encrypted"),
                "iops": volume.get("Iops"),
                "throughput": volume.get("Throughput"),
                "tags": tags,
            }
            attrs = {"id": str(volume["VolumeId"])}
            found.append(Actual(self.kind, name, attrs, project(props, wanted.get(name))))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "AvailabilityZone": props["availability_zone"],
            "Size": props["size"],
            "VolumeType": props["volume_type"],
            "Encrypted": bool(props.get("encrypted")),
        }
        if props.get("iops") is not None:
            kwargs["Iops"] = props["iops"]
        if props.get("throughput") is not None:
            kwargs["Throughput"] = props["throughput"]
        tags = props.get("tags") or {}
        if tags:
            kwargs["TagSpecifications"] = cloud.tag_specifications("volume", tags)
        kwargs["ClientToken"] = client_token(cloud.cluster_name, desired.name, kwargs)
        response = cloud.ec2.create_volume(**kwargs)
        return {"id": str(response["VolumeId"])}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        have = actual.props
        kwargs: dict[str, Any] = {}
        size, current_size = props.get("size"), have.get("size")
        if size is not None and current_size is not None and size != current_size:
            if size < current_size:
                raise PykopsError(
                    f"cannot shrink EBS volume {actual.name} ({actual.id}) from {current_size} GiB "
                    f"to {size} GiB: EBS volumes can only grow",
                    hint=f"set the etcd volume size back to {current_size} or more",
                )
            kwargs["Size"] = size
        for key, field in (("volume_type", "VolumeType"), ("iops", "Iops"), ("throughput", "Throughput")):
            if props.get(key) is not None and props[key] != have.get(key):
                kwargs[field] = props[key]
        if kwargs:
            cloud.ec2.modify_volume(VolumeId=actual.id, **kwargs)
        _create_ec2_tags(cloud, actual.id, tags_to_set(have.get("tags"), props.get("tags")))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.ec2.delete_volume(VolumeId=actual.id)
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidVolume.NotFound":
                return
            if code == "VolumeInUse":
                raise RetryableError(
                    f"EBS volume {actual.name} ({actual.id}) is still attached", code=code
                ) from exc
            raise


COMPUTE_KINDS: list[Kind] = [SSHKey(), LaunchTemplate(), AutoScalingGroup(), EBSVolume()]
