"""Load balancer kinds: the API network load balancer, its target group and its listener (elbv2).

Load balancers and target groups cannot be listed by tag: ``find`` lists them (one paginated call) and reads
their tags with ``DescribeTags``, 20 ARNs per call, keeping those tagged for the cluster. Calls per find:

* ``NetworkLoadBalancer``: ``DescribeLoadBalancers`` (pages of 400) + ⌈network load balancers in the
  region / 20⌉ ``DescribeTags``.
* ``TargetGroup``: ``DescribeTargetGroups`` (pages of 400) + ⌈target groups in the region / 20⌉
  ``DescribeTags``.
* ``Listener``: as ``NetworkLoadBalancer``, plus one ``DescribeListeners`` per load balancer of the cluster
  (one: ``api.<cluster>``).

None of these grows with the number of instance groups. Names are limited to 32 characters:
:func:`elb_name` (shared with the model, ``pykops.model.names``) makes them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError

from pykops.cloud.aws.cloud import TAG_NAME, error_code
from pykops.cloud.aws.compute import is_owned, paginate, project, tags_to_set
from pykops.engine.types import Actual, FieldChange, Kind, Resource
from pykops.errors import PykopsError
from pykops.model.names import ELB_NAME_MAX, elb_name

_TAGS_PER_CALL = 20

__all__ = ["ELB_NAME_MAX", "LB_KINDS", "Listener", "NetworkLoadBalancer", "TargetGroup", "elb_name"]


def _tags_by_arn(cloud: Any, arns: list[str]) -> dict[str, dict[str, str]]:
    tags: dict[str, dict[str, str]] = {}
    for start in range(0, len(arns), _TAGS_PER_CALL):
        answer = cloud.elbv2.describe_tags(ResourceArns=arns[start : start + _TAGS_PER_CALL])
        for description in answer.get("TagDescriptions") or []:
            tags[str(description["ResourceArn"])] = cloud.tag_dict(description.get("Tags"))
    return tags


def _cluster_items(
    cloud: Any, items: list[dict[str, Any]], arn_key: str
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    tags = _tags_by_arn(cloud, [str(item[arn_key]) for item in items])
    owned = []
    for item in items:
        item_tags = tags.get(str(item[arn_key]), {})
        if is_owned(item_tags, cloud.cluster_name):
            owned.append((item, item_tags))
    return owned


def _logical_name(tags: dict[str, str], aws_name: str, desired: list[Resource], name_prop: str) -> str:
    """The Name tag, else the desired resource with this AWS name, else the AWS name."""
    if tags.get(TAG_NAME):
        return tags[TAG_NAME]
    for resource in desired:
        if resource.props.get(name_prop) == aws_name:
            return resource.name
    return aws_name


def _cluster_load_balancers(cloud: Any) -> list[tuple[dict[str, Any], dict[str, str]]]:
    balancers = [
        lb
        for lb in paginate(
            cloud.elbv2, "describe_load_balancers", "LoadBalancers", PaginationConfig={"PageSize": 400}
        )
        if lb.get("Type") == "network"
    ]
    return _cluster_items(cloud, balancers, "LoadBalancerArn")


def _add_tags(cloud: Any, arn: str, actual_tags: Any, desired_tags: Any) -> None:
    tags = tags_to_set(actual_tags, desired_tags)
    if tags:
        cloud.elbv2.add_tags(ResourceArns=[arn], Tags=cloud.tag_list(tags))


def _tolerate(exc: ClientError, *codes: str) -> None:
    if error_code(exc) not in codes:
        raise exc


class NetworkLoadBalancer:
    """The API load balancer ``api.<cluster>`` (type network); attrs ``id``/``arn``, ``dns_name``."""

    kind: ClassVar[str] = "NetworkLoadBalancer"
    immutable: ClassVar[frozenset[str]] = frozenset({"load_balancer_name", "scheme"})
    replaceable: ClassVar[bool] = True
    unordered: ClassVar[frozenset[str]] = frozenset({"subnets", "security_groups"})

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        found = []
        for lb, tags in _cluster_load_balancers(cloud):
            name = _logical_name(tags, str(lb["LoadBalancerName"]), desired, "load_balancer_name")
            props = {
                "load_balancer_name": lb["LoadBalancerName"],
                "scheme": lb.get("Scheme"),
                "subnets": sorted(
                    str(z["SubnetId"]) for z in lb.get("AvailabilityZones") or [] if z.get("SubnetId")
                ),
                "security_groups": sorted(lb.get("SecurityGroups") or []),
                "tags": tags,
            }
            found.append(Actual(self.kind, name, self._attrs(lb), project(props, wanted.get(name))))
        return found

    @staticmethod
    def _attrs(lb: dict[str, Any]) -> dict[str, Any]:
        arn = str(lb["LoadBalancerArn"])
        return {
            "id": arn,
            "arn": arn,
            "dns_name": lb.get("DNSName"),
            "hosted_zone_id": lb.get("CanonicalHostedZoneId"),
        }

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "Name": props["load_balancer_name"],
            "Type": "network",
            "Scheme": props.get("scheme") or "internet-facing",
            "Subnets": list(props.get("subnets") or []),
            "Tags": cloud.tag_list(props.get("tags") or {}),
        }
        if props.get("security_groups"):
            kwargs["SecurityGroups"] = list(props["security_groups"])
        try:
            answer = cloud.elbv2.create_load_balancer(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "DuplicateLoadBalancerName":
                raise PykopsError(
                    f"load balancer {props['load_balancer_name']!r} already exists but is not tagged for "
                    f"cluster {cloud.cluster_name}: delete or rename it"
                ) from exc
            raise
        return self._attrs(answer["LoadBalancers"][0])

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        arn = actual.id
        have = actual.props
        if "subnets" in props and sorted(props["subnets"] or []) != sorted(have.get("subnets") or []):
            cloud.elbv2.set_subnets(LoadBalancerArn=arn, Subnets=list(props["subnets"] or []))
        if "security_groups" in props and sorted(props["security_groups"] or []) != sorted(
            have.get("security_groups") or []
        ):
            cloud.elbv2.set_security_groups(
                LoadBalancerArn=arn, SecurityGroups=list(props["security_groups"] or [])
            )
        _add_tags(cloud, arn, have.get("tags"), props.get("tags"))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.elbv2.delete_load_balancer(LoadBalancerArn=actual.id)
        except ClientError as exc:
            _tolerate(exc, "LoadBalancerNotFound")


class TargetGroup:
    """The API target group ``tcp.<cluster>`` (instances, TCP); attrs ``id``/``arn``."""

    kind: ClassVar[str] = "TargetGroup"
    immutable: ClassVar[frozenset[str]] = frozenset({"target_group_name", "vpc", "port", "protocol"})
    replaceable: ClassVar[bool] = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        groups = paginate(
            cloud.elbv2, "describe_target_groups", "TargetGroups", PaginationConfig={"PageSize": 400}
        )
        found = []
        for group, tags in _cluster_items(cloud, groups, "TargetGroupArn"):
            name = _logical_name(tags, str(group["TargetGroupName"]), desired, "target_group_name")
            props = {
                "target_group_name": group["TargetGroupName"],
                "vpc": group.get("VpcId"),
                "port": group.get("Port"),
                "protocol": group.get("Protocol"),
                "health_check": {
                    "protocol": group.get("HealthCheckProtocol"),
                    "port": group.get("HealthCheckPort"),  # a string: "443" or "traffic-port"
                },
                "tags": tags,
            }
            arn = str(group["TargetGroupArn"])
            props = project(props, wanted.get(name), nested=("health_check",))
            found.append(Actual(self.kind, name, {"id": arn, "arn": arn}, props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        health = props.get("health_check") or {}
        kwargs: dict[str, Any] = {
            "Name": props["target_group_name"],
            "Protocol": props.get("protocol") or "TCP",
            "Port": props["port"],
            "VpcId": props["vpc"],
            "TargetType": "instance",
            "Tags": cloud.tag_list(props.get("tags") or {}),
        }
        if health.get("protocol"):
            kwargs["HealthCheckProtocol"] = health["protocol"]
        if health.get("port") is not None:
            kwargs["HealthCheckPort"] = str(health["port"])
        try:
            answer = cloud.elbv2.create_target_group(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "DuplicateTargetGroupName":
                raise PykopsError(
                    f"target group {props['target_group_name']!r} already exists with other settings "
                    f"and is not tagged for cluster {cloud.cluster_name}: delete or rename it"
                ) from exc
            raise
        arn = str(answer["TargetGroups"][0]["TargetGroupArn"])
        return {"id": arn, "arn": arn}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        health = props.get("health_check") or {}
        if health and health != actual.props.get("health_check"):
            kwargs: dict[str, Any] = {}
            if health.get("protocol"):
                kwargs["HealthCheckProtocol"] = health["protocol"]
            if health.get("port") is not None:
                kwargs["HealthCheckPort"] = str(health["port"])
            cloud.elbv2.modify_target_group(TargetGroupArn=actual.id, **kwargs)
        _add_tags(cloud, actual.id, actual.props.get("tags"), props.get("tags"))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.elbv2.delete_target_group(TargetGroupArn=actual.id)
        except ClientError as exc:
            _tolerate(exc, "TargetGroupNotFound")


def _forward(target_group: Any) -> list[dict[str, Any]]:
    return [{"Type": "forward", "TargetGroupArn": target_group}]


def _forward_target(actions: list[dict[str, Any]]) -> Any:
    for action in actions:
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            return action["TargetGroupArn"]
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if len(groups) == 1:
            return groups[0].get("TargetGroupArn")
    return None


class Listener:
    """A listener of the API load balancer (``<load balancer name>/<port>``), forwarding to a target group."""

    kind: ClassVar[str] = "Listener"
    immutable: ClassVar[frozenset[str]] = frozenset({"load_balancer", "port"})
    replaceable: ClassVar[bool] = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        found = []
        for lb, tags in _cluster_load_balancers(cloud):
            lb_name = _logical_name(tags, str(lb["LoadBalancerName"]), [], "load_balancer_name")
            arn = str(lb["LoadBalancerArn"])
            for listener in paginate(cloud.elbv2, "describe_listeners", "Listeners", LoadBalancerArn=arn):
                name = f"{lb_name}/{listener['Port']}"
                props = {
                    "load_balancer": arn,
                    "port": listener.get("Port"),
                    "protocol": listener.get("Protocol"),
                    "target_group": _forward_target(listener.get("DefaultActions") or []),
                }
                listener_arn = str(listener["ListenerArn"])
                attrs = {"id": listener_arn, "arn": listener_arn}
                found.append(Actual(self.kind, name, attrs, project(props, wanted.get(name))))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        answer = cloud.elbv2.create_listener(
            LoadBalancerArn=props["load_balancer"],
            Port=props["port"],
            Protocol=props.get("protocol") or "TCP",
            DefaultActions=_forward(props["target_group"]),
        )
        arn = str(answer["Listeners"][0]["ListenerArn"])
        return {"id": arn, "arn": arn}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        cloud.elbv2.modify_listener(
            ListenerArn=actual.id,
            Protocol=props.get("protocol") or "TCP",
            DefaultActions=_forward(props["target_group"]),
        )
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.elbv2.delete_listener(ListenerArn=actual.id)
        except ClientError as exc:
            _tolerate(exc, "ListenerNotFound")


LB_KINDS: list[Kind] = [NetworkLoadBalancer(), TargetGroup(), Listener()]
