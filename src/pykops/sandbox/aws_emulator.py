"""A local AWS emulator: moto's server in a child process, with pykops' fidelity fixes.

Run it directly::

    python -m pykops.sandbox.aws_emulator --host 127.0.0.1 --port 4566

or from Python (tests, the demo)::

    with AwsEmulator() as aws:          # picks a free port
        os.environ.update(aws.env())    # AWS_ENDPOINT_URL, region, fake credentials
        ...

The server always binds a loopback address. moto is imported only in the child, so importing this module
is cheap and does not need the ``test`` extra.

Fidelity fixes
--------------
moto is good but not AWS. Where pykops depends on an AWS behaviour that moto 5.2.5 gets wrong, the child
patches moto before serving; each fix in :data:`FIDELITY_FIXES` names the AWS behaviour it restores and has a
test in ``tests/test_aws_emulator.py`` (the fixes of the ``moto_fixes_*`` modules: in
``tests/test_aws_emulator_ec2.py``) that shows that behaviour over HTTP. A fix can be switched off
(``--without-fix NAME``, ``AwsEmulator(fixes=...)``) to show what plain moto does.

The child also serves ``GET /_pykops/health`` (``{"status": "ok", "fixes": [...]}``), which is how
:meth:`AwsEmulator.start` knows the server is up.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import contextvars
import copy
import functools
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from pykops.errors import PykopsError
from pykops.sandbox.fidelity import FidelityFix as FidelityFix
from pykops.sandbox.moto_fixes_ec2 import EC2_FIXES
from pykops.sandbox.moto_fixes_elbv2 import ELBV2_FIXES
from pykops.sandbox.moto_fixes_iam import IAM_FIXES

DEFAULT_REGION = "eu-west-1"
DEFAULT_HOST = "127.0.0.1"
HEALTH_PATH = "/_pykops/health"
_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_LOG_TAIL_BYTES = 4000

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def tail_file(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (read from its last few KB); "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class AwsEmulatorError(PykopsError):
    """The AWS emulator could not be started or reached."""


# ---------------------------------------------------------------------------------------------------------
# Fidelity fixes. They run in the child process only (they import moto).
# ---------------------------------------------------------------------------------------------------------


def _fix_s3_atomic_requests() -> None:
    """Serialise the handling of S3 requests (after the request body has been received).

    moto's PutObject evaluates ``If-None-Match``/``If-Match`` with ``backend.get_object`` and only then
    stores the new object with ``backend.put_object``; nothing makes the pair atomic, and the threaded
    server runs requests concurrently. Two racing conditional writes can both pass the check and both
    succeed (``test_racing_conditional_writes_without_fix_can_both_succeed`` shows it by widening the
    window). Holding one lock around S3 request handling restores S3's guarantees: conditional writes are
    atomic and every read sees the latest completed write. The request body is read before the lock is
    taken, so slow uploads do not hold it.
    """
    from moto.s3 import responses

    s3_response: Any = responses.S3Response  # Any: we patch its methods
    lock = threading.RLock()
    key_response = s3_response._key_response
    bucket_response = s3_response._bucket_response

    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        with lock:
            return key_response(self, request, full_url)

    def _bucket_response(self: Any, request: Any, full_url: str) -> Any:
        with lock:
            return bucket_response(self, request, full_url)

    s3_response._key_response = _key_response
    s3_response._bucket_response = _bucket_response


def _fix_s3_delete_if_match_star() -> None:
    """Make ``DeleteObject`` with ``If-Match: *`` delete an existing object.

    moto compares ``*`` with the object's ETag, so the request always fails with 412. On AWS ``If-Match: *``
    means "only if the object exists": it deletes a live object (204) and answers 404 NoSuchKey if there is
    none.
    """
    from moto.s3 import responses
    from moto.s3.exceptions import MissingKey
    from werkzeug.datastructures import Headers

    s3_response: Any = responses.S3Response
    delete_object = s3_response.delete_object

    def _delete_object(self: Any) -> Any:
        if str(self.headers.get("If-Match", "")).strip() != "*":
            return delete_object(self)
        key_name = self.parse_key_name()
        if self.backend.get_object(self.bucket_name, key_name) is None:
            raise MissingKey(key=key_name)
        original = self.headers
        unconditional = Headers(list(original.items()))
        unconditional.remove("If-Match")
        self.headers = unconditional
        try:
            return delete_object(self)
        finally:
            self.headers = original

    s3_response.delete_object = _delete_object


_ACCESS_DENIED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    "<RequestId>0000000000000000</RequestId><HostId>pykops-aws-emulator</HostId></Error>"
)


def _fix_s3_access_denied_error() -> None:
    """Answer object requests denied by a bucket policy with an ``AccessDenied`` error document.

    moto answers them with a bare ``403`` and an empty body, which SDKs report as error code ``"403"``.
    AWS sends ``403`` with ``<Error><Code>AccessDenied</Code>...``, and SDKs (and pykops' messages) key on
    the ``AccessDenied`` code.
    """
    from moto.s3 import responses

    s3_response: Any = responses.S3Response
    key_response = s3_response._key_response

    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        response = key_response(self, request, full_url)
        if isinstance(response, tuple) and len(response) == 3:
            status, headers, body = response
            if status == 403 and not body:
                return 403, {**headers, "content-type": "application/xml"}, _ACCESS_DENIED_XML
        return response

    s3_response._key_response = _key_response


# -- EC2 launch templates -----------------------------------------------------------------------------------

# The data of the version named by CreateLaunchTemplateVersion's SourceVersion, while that request runs.
_LT_SOURCE_DATA: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "pykops_lt_source_data", default=None
)


def _fix_ec2_launch_template_version_user_data() -> None:
    """Store a launch-template version's ``UserData`` the way every other moto code path expects it.

    moto's ``CreateLaunchTemplate`` handler wraps ``UserData`` in a ``Base64EncodedString``
    (``parse_user_data``), but its ``CreateLaunchTemplateVersion`` handler
    (``ec2/responses/launch_templates.py``) stores the raw string. ``LaunchTemplateVersion.user_data``
    asserts the wrapped type, so an Auto Scaling group (or anything else that reads the version's user data)
    launching from such a version fails with an ``AssertionError``: HTTP 500. On AWS the version launches
    like any other, with its own user data, and malformed base64 is refused when the version is created.
    """
    from moto.core.types import Base64EncodedString
    from moto.ec2.models.launch_templates import LaunchTemplate
    from moto.ec2.utils import parse_user_data

    template_cls: Any = LaunchTemplate
    create_version = template_cls.create_version

    def _create_version(self: Any, data: dict[str, Any], description: str) -> Any:
        user_data = data.get("UserData")
        if user_data is not None and not isinstance(user_data, Base64EncodedString):
            data = {**data, "UserData": parse_user_data(user_data)}
        return create_version(self, data, description)

    template_cls.create_version = _create_version


def _fix_ec2_launch_template_source_version() -> None:
    """Make ``CreateLaunchTemplateVersion`` start from ``SourceVersion``'s data.

    moto ignores ``SourceVersion``: the new version holds only the ``LaunchTemplateData`` of the request. On
    AWS the new version inherits every launch parameter of the source version, and the parameters given in
    ``LaunchTemplateData`` override (replace) the inherited ones of the same name. An unknown source version
    is refused (``InvalidLaunchTemplateVersion.NotFound``).
    """
    from moto.ec2.models.launch_templates import LaunchTemplate
    from moto.ec2.responses.launch_templates import LaunchTemplates

    responses: Any = LaunchTemplates
    handler = responses.create_launch_template_version
    template_cls: Any = LaunchTemplate
    create_version = template_cls.create_version

    def _handler(self: Any) -> Any:
        source = self._get_param("SourceVersion")
        template_id = self._get_param("LaunchTemplateId")
        template_name = self._get_param("LaunchTemplateName")
        if source is None or not (template_id or template_name):
            return handler(self)
        if template_id:
            template = self.ec2_backend.get_launch_template(template_id)
        else:
            template = self.ec2_backend.get_launch_template_by_name(template_name)
        token = _LT_SOURCE_DATA.set(copy.deepcopy(template.get_version(source).data))
        try:
            return handler(self)
        finally:
            _LT_SOURCE_DATA.reset(token)

    def _create_version(self: Any, data: dict[str, Any], description: str) -> Any:
        source_data = _LT_SOURCE_DATA.get()
        if source_data is not None:
            data = {**source_data, **{key: value for key, value in data.items() if value is not None}}
        return create_version(self, data, description)

    responses.create_launch_template_version = _handler
    template_cls.create_version = _create_version


# -- EC2 images ----------------------------------------------------------------------------------------------


def _fix_ec2_register_image_attributes() -> None:
    """Make ``RegisterImage`` keep the image's architecture, root device, virtualization, boot mode and tags.

    moto's ``RegisterImage`` reads only ``Name`` and ``Description``: the image has no architecture, the
    root device type ``standard`` and no tags. AWS records what the request says: ``Architecture`` (default
    ``i386``), ``RootDeviceName``, root device type ``ebs`` when ``BlockDeviceMappings`` gives the root device
    an EBS volume, ``VirtualizationType`` (default ``paravirtual``), ``BootMode``, and the ``image`` tags of
    ``TagSpecifications``. pykops reads ``Architecture`` and ``RootDeviceName`` of the images it resolves.
    """
    from moto.core.responses import ActionResult
    from moto.ec2.responses.amis import AmisResponse

    responses: Any = AmisResponse

    def register_image(self: Any) -> Any:
        name = self._get_param("Name")
        description = self._get_param("Description", "")
        self.error_on_dryrun()
        image = self.ec2_backend.register_image(name, description)
        image.architecture = self._get_param("Architecture") or "i386"
        image.virtualization_type = self._get_param("VirtualizationType") or "paravirtual"
        image.root_device_name = self._get_param("RootDeviceName") or image.root_device_name
        for mapping in self._get_param("BlockDeviceMappings", []) or []:
            if mapping.get("DeviceName") == image.root_device_name and mapping.get("Ebs") is not None:
                image.root_device_type = "ebs"
        image.boot_mode = self._get_param("BootMode") or image.boot_mode
        image.image_location = self._get_param("ImageLocation") or image.image_location
        for spec in self._get_param("TagSpecifications", []) or []:
            if spec.get("ResourceType") == "image":
                image.add_tags({tag["Key"]: tag.get("Value", "") for tag in spec.get("Tags", [])})
        return ActionResult({"ImageId": image.id})

    responses.register_image = register_image


def _fix_ec2_shared_public_images() -> None:
    """Show public images of other accounts (and images shared with this account) in ``DescribeImages``.

    moto keeps every account's images apart: an image another account registered and made public
    (``LaunchPermission`` group ``all``) is invisible, so ``DescribeImages(Owners=["099720109477"])`` finds
    nothing and ``RunInstances`` cannot see the image's architecture. On AWS a public image can be described
    and launched by every account in its region, and an image shared with an account (``LaunchPermission``
    ``UserId``) by that account. This is how the sandbox publishes Canonical's and Amazon's images: it
    registers them as those accounts (STS ``AssumeRole`` into the owner's account) and makes them public.
    """
    from moto.ec2.exceptions import InvalidAMIIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import AmiBackend

    ami_backend: Any = AmiBackend
    describe_images = ami_backend.describe_images

    def _describe_images(
        self: Any,
        ami_ids: list[str] | None = None,
        filters: dict[str, Any] | None = None,
        exec_users: list[str] | None = None,
        owners: list[str] | None = None,
    ) -> list[Any]:
        me = str(self.account_id)
        # "self" means the caller, also when another account's backend evaluates the request.
        owners = [me if owner == "self" else owner for owner in owners] if owners else owners
        exec_users = [me if user == "self" else user for user in exec_users] if exec_users else exec_users
        query = {"ami_ids": ami_ids, "filters": filters, "exec_users": exec_users, "owners": owners}
        not_found: InvalidAMIIdError | None = None
        try:
            images: list[Any] = list(describe_images(self, **query))
        except InvalidAMIIdError as err:
            images, not_found = [], err
        seen = {image.id for image in images}
        for account_id, account in list(dict.items(ec2_backends)):
            other = dict.get(account, self.region_name) if account_id != me else None
            if other is None:
                continue
            try:
                found = describe_images(other, **query)
            except InvalidAMIIdError:
                continue
            for image in found:
                shared = image.is_public or {"UserId": me} in image.launch_permissions
                # Only the images this account owns: every backend also preloads moto's default AMIs.
                if shared and image.owner_id == account_id and image.id not in seen:
                    images.append(image)
                    seen.add(image.id)
        if not images and not_found is not None:
            raise not_found
        return images

    ami_backend.describe_images = _describe_images


# -- Auto Scaling -------------------------------------------------------------------------------------------

# Switches of the Auto Scaling launcher that replaces moto's replace_autoscaling_group_instances; the fixes
# autoscaling-balance-zones and autoscaling-instance-template-version each turn one on.
_ASG_LAUNCH = {"balance_zones": False, "pin_template_version": False}
_LT_ID_TAG = "aws:ec2launchtemplate:id"
_LT_VERSION_TAG = "aws:ec2launchtemplate:version"


def _instance_tag(instance: Any, key: str) -> str | None:
    for tag in instance.get_tags():
        if tag.get("key") == key:
            return str(tag.get("value"))
    return None


def _group_zone_subnets(group: Any) -> dict[str, list[str | None]]:
    """The group's zones in the order given, each with its subnets (``[None]`` without VPCZoneIdentifier)."""
    zones: dict[str, list[str | None]] = {}
    subnet_ids = [s.strip() for s in (group.vpc_zone_identifier or "").split(",") if s.strip()]
    if subnet_ids:
        ec2_backend = group.autoscaling_backend.ec2_backend
        zone_of = {s.id: s.availability_zone for s in ec2_backend.describe_subnets(subnet_ids=subnet_ids)}
        for subnet_id in subnet_ids:
            zones.setdefault(zone_of[subnet_id], []).append(subnet_id)
    else:
        for zone in group.availability_zones:
            zones.setdefault(zone, [None])
    return zones


def _balanced_placements(group: Any, count: int) -> list[tuple[str, str | None, int]]:
    """Where to launch ``count`` instances: each one into the zone (then subnet) with the fewest instances."""
    zones = _group_zone_subnets(group)
    zone_order = list(zones)
    zone_count: collections.Counter[str] = collections.Counter()
    subnet_count: collections.Counter[str | None] = collections.Counter()
    for state in group.instance_states:
        zone_count[state.instance.placement.zone] += 1
        subnet_count[state.instance.subnet_id] += 1
    plan: collections.Counter[tuple[str, str | None]] = collections.Counter()
    for _ in range(count):
        zone = min(zone_order, key=lambda z: (zone_count[z], zone_order.index(z)))
        subnets = zones[zone]
        subnet = min(subnets, key=lambda s: (subnet_count[s], subnets.index(s)))
        zone_count[zone] += 1
        subnet_count[subnet] += 1
        plan[(zone, subnet)] += 1
    return [(zone, subnet, n) for (zone, subnet), n in plan.items()]


def _launch_group_instances(group: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
    """moto's ``replace_autoscaling_group_instances``, with zone balancing and version pinning switchable."""
    import random

    from moto.autoscaling.models import ASG_NAME_TAG, InstanceState

    tags = {**propagated_tags, ASG_NAME_TAG: group.name, **group.instance_tags}
    associate_public_ip = group.launch_config.associate_public_ip_address if group.launch_config else None
    launch_template: dict[str, str] | None = None
    template = group.ec2_launch_template
    if template is not None:
        launch_template = {"LaunchTemplateId": template.id}
        if _ASG_LAUNCH["pin_template_version"]:
            launch_template["Version"] = str(template.get_version(group.launch_template_version).number)
    if _ASG_LAUNCH["balance_zones"]:
        placements = _balanced_placements(group, count_needed)
    else:  # moto: every instance in the first subnet, placement a random zone of the group
        first = group.vpc_zone_identifier.split(",")[0] if group.vpc_zone_identifier else None
        placements = [(random.choice(group.availability_zones), first, count_needed)]
    for zone, subnet_id, count in placements:
        reservation = group.autoscaling_backend.ec2_backend.run_instances(
            group.image_id,
            count,
            group.user_data,
            group.security_groups,
            instance_type=group.instance_type,
            tags={"instance": dict(tags)},
            placement=zone,
            launch_config=group.launch_config,
            launch_template=launch_template,
            is_instance_type_default=False,
            associate_public_ip=associate_public_ip,
            subnet_id=subnet_id,
        )
        for instance in reservation.instances:
            instance.autoscaling_group = group
            group.instance_states.append(
                InstanceState(instance, protected_from_scale_in=group.new_instances_protected_from_scale_in)
            )


def _install_asg_launcher() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    group_cls: Any = FakeAutoScalingGroup
    if getattr(group_cls.replace_autoscaling_group_instances, "_pykops_launcher", False):
        return

    def replace_autoscaling_group_instances(
        self: Any, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        _launch_group_instances(self, count_needed, propagated_tags)

    replace_autoscaling_group_instances._pykops_launcher = True  # type: ignore[attr-defined]
    group_cls.replace_autoscaling_group_instances = replace_autoscaling_group_instances


def _scale_in_order(group: Any, excess: int) -> list[Any]:
    """``group.instance_states`` with the ``excess`` instances AWS' Default termination policy picks first.

    Each pick: the zone with the most instances; in it, an instance not launched from the group's current
    launch-template version before one that is; then the oldest.
    """
    states = list(group.instance_states)
    pool = [s for s in group.active_instances() if not s.protected_from_scale_in]
    zone_count = collections.Counter(s.instance.placement.zone for s in group.active_instances())
    current: str | None = None
    if group.ec2_launch_template is not None:
        current = str(group.ec2_launch_template.get_version(group.launch_template_version).number)
    chosen: list[Any] = []
    for _ in range(min(excess, len(pool))):
        zone = max((s.instance.placement.zone for s in pool), key=lambda z: zone_count[z])
        victim = min(
            (s for s in pool if s.instance.placement.zone == zone),
            key=lambda s: (_instance_tag(s.instance, _LT_VERSION_TAG) == current, s.instance.launch_time),
        )
        chosen.append(victim)
        pool.remove(victim)
        zone_count[zone] -= 1
    return chosen + [s for s in states if all(s is not c for c in chosen)]


def _fix_autoscaling_balance_zones() -> None:
    """Spread an Auto Scaling group's instances evenly over its Availability Zones.

    moto launches every instance into the first subnet of ``VPCZoneIdentifier`` (so into one zone), and
    scales in by terminating the first instances of its list. AWS launches each instance into the enabled
    zone with the fewest instances (within a zone, into one of the group's subnets there), and its Default
    termination policy scales in from the zone with the most instances, preferring instances that do not
    use the group's current launch template version, then the oldest.
    """
    from moto.autoscaling.models import FakeAutoScalingGroup

    _install_asg_launcher()
    _ASG_LAUNCH["balance_zones"] = True
    group_cls: Any = FakeAutoScalingGroup
    set_desired_capacity = group_cls.set_desired_capacity

    def _set_desired_capacity(self: Any, new_capacity: int | None) -> None:
        order = {id(state): n for n, state in enumerate(self.instance_states)}
        policy = self.mixed_instances_policy or {}
        if not policy.get("LaunchTemplate", {}).get("Overrides"):
            target = self.min_size if new_capacity is None else new_capacity
            excess = len(self.active_instances()) - (target or 0)
            if excess > 0:  # moto terminates the first unprotected instances of its list: put ours first
                self.instance_states = _scale_in_order(self, excess)
        set_desired_capacity(self, new_capacity)
        # moto rebuilds the list through a set: keep the launch order (new instances last).
        self.instance_states.sort(key=lambda state: order.get(id(state), len(order)))

    group_cls.set_desired_capacity = _set_desired_capacity


def _fix_autoscaling_instance_template_version() -> None:
    """Launch an Auto Scaling group's instances from the group's template version, and report that version.

    moto passes the launch template to ``RunInstances`` without a version, so the instance's
    ``aws:ec2launchtemplate:version`` tag (and its block devices, key pair, security groups) come from the
    template's default version, and ``DescribeAutoScalingGroups``/``DescribeAutoScalingInstances`` report the
    default version number for every instance. On AWS an instance is launched from the version the group
    names (``$Latest``/``$Default`` resolved at launch), and both calls report, per instance, the version
    number it was launched from: how kops and pykops find the instances a rolling update must replace.
    """
    from moto.autoscaling.models import InstanceState

    _install_asg_launcher()
    _ASG_LAUNCH["pin_template_version"] = True
    state_cls: Any = InstanceState

    def launch_template(self: Any) -> dict[str, Any] | None:
        group = self.auto_scaling_group
        template = group.ec2_launch_template if group is not None else None
        if template is None:
            return None
        version: str | None = None
        if _instance_tag(self.instance, _LT_ID_TAG) == template.id:
            version = _instance_tag(self.instance, _LT_VERSION_TAG)
        return {
            "LaunchTemplateId": template.id,
            "LaunchTemplateName": template.name,
            "Version": version if version is not None else str(template.default_version_number),
        }

    state_cls.launch_template = property(launch_template)


_UNHEALTHY_EC2_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})
_HEALTH_CHECK_LOCK = threading.Lock()


def _autoscaling_health_check(account_id: str, region: str) -> None:
    """One health-check cycle of every Auto Scaling group of ``account_id`` in ``region``."""
    from moto.autoscaling.models import autoscaling_backends

    account = dict.get(autoscaling_backends, account_id)  # plain dict access: never create a backend
    backend = dict.get(account, region) if account is not None else None
    if backend is None:
        return
    with _HEALTH_CHECK_LOCK:
        for group in list(backend.autoscaling_groups.values()):
            unhealthy = [
                state
                for state in group.instance_states
                if state.lifecycle_state == "InService"
                and (state.health_status == "Unhealthy" or state.instance.state in _UNHEALTHY_EC2_STATES)
            ]
            if not unhealthy:
                continue
            group.instance_states = [s for s in group.instance_states if all(s is not u for u in unhealthy)]
            for state in unhealthy:
                if state.instance.state != "terminated":
                    state.instance.terminate()  # Auto Scaling ignores EC2 termination protection
            group.set_desired_capacity(group.desired_capacity)


def _fix_autoscaling_replace_unhealthy() -> None:
    """Replace an Auto Scaling group's instances that were stopped or set ``Unhealthy``.

    AWS' EC2 health check counts an instance in any state but ``running`` as unhealthy; Auto Scaling
    terminates unhealthy instances (also those set ``Unhealthy`` with ``SetInstanceHealth``) and launches
    replacements to get back to the desired capacity, on its next health-check cycle (there is no fixed
    deadline). moto leaves a stopped instance in its group, ``InService`` and counted towards the desired
    capacity, and ``SetInstanceHealth`` only changes a label: the group never heals.

    The emulator runs one health-check cycle for the account and region at the start of every Auto Scaling
    and EC2 request, so the replacement is there on the next such call (``DescribeAutoScalingGroups``,
    ``DescribeInstances``, ...). Instances terminated through EC2 (``TerminateInstances``) or through Auto
    Scaling (``TerminateInstanceInAutoScalingGroup`` without decrementing the capacity) are already replaced
    by plain moto, at once; the tests guard that too.
    """
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.ec2.responses import EC2Response

    for response_cls in (AutoScalingResponse, EC2Response):
        klass: Any = response_cls
        call_action = klass.call_action

        def _call_action(self: Any, _call_action: Any = call_action) -> Any:
            try:
                _autoscaling_health_check(self.current_account, self.region)
            except Exception:  # a broken health check must not break the request itself
                import traceback

                traceback.print_exc()
            return _call_action(self)

        klass.call_action = _call_action


# -- IAM ----------------------------------------------------------------------------------------------------


def _fix_iam_aws_managed_policies() -> None:
    """Give every account the AWS managed policies (``arn:aws:iam::aws:policy/...``).

    Plain moto's accounts have none unless ``MOTO_IAM_LOAD_MANAGED_POLICIES`` is set, so attaching
    ``arn:aws:iam::aws:policy/AmazonEC2FullAccess`` fails with ``NoSuchEntity``. In AWS they always exist.

    With the setting, moto parses its managed-policy data (about 1,300 policies) again for every IAM backend
    it creates, and it creates one per account and partition as soon as an account appears (for instance
    through STS ``AssumeRole``): 0.3 s each. This fix sets it and parses the data once.
    """
    from moto.iam import models

    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    iam_models: Any = models

    @functools.cache
    def policy_data() -> tuple[tuple[str, dict[str, Any]], ...]:
        return tuple(json.loads(iam_models.aws_managed_policies_data).items())

    def _init_aws_policies(self: Any) -> list[Any]:
        return [
            iam_models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
            for name, data in policy_data()
        ]

    iam_models.IAMBackend._init_aws_policies = _init_aws_policies


FIDELITY_FIXES: tuple[FidelityFix, ...] = (
    FidelityFix(
        "s3-atomic-requests",
        "S3 conditional writes (If-None-Match: *, If-Match: <etag>) are atomic: of two racing writers "
        "exactly one succeeds and the other gets 412 PreconditionFailed (or 409 ConditionalRequestConflict)",
        _fix_s3_atomic_requests,
    ),
    FidelityFix(
        "s3-delete-if-match-star",
        "DeleteObject with If-Match: * deletes the object if it exists (204) "
        "and answers 404 NoSuchKey if not",
        _fix_s3_delete_if_match_star,
    ),
    FidelityFix(
        "s3-access-denied-error",
        "a request denied by a bucket policy gets 403 with error code AccessDenied",
        _fix_s3_access_denied_error,
    ),
    FidelityFix(
        "ec2-launch-template-version-user-data",
        "a launch template version created by CreateLaunchTemplateVersion with UserData launches "
        "(Auto Scaling, RunInstances) with that user data instead of failing with HTTP 500",
        _fix_ec2_launch_template_version_user_data,
    ),
    FidelityFix(
        "ec2-launch-template-source-version",
        "CreateLaunchTemplateVersion with SourceVersion starts from the source version's data, "
        "overridden by the LaunchTemplateData given",
        _fix_ec2_launch_template_source_version,
    ),
    FidelityFix(
        "ec2-register-image-attributes",
        "RegisterImage keeps Architecture, RootDeviceName (root device type ebs), VirtualizationType, "
        "BootMode and image tags",
        _fix_ec2_register_image_attributes,
    ),
    FidelityFix(
        "ec2-shared-public-images",
        "public images of other accounts (and images shared with the account) are visible to "
        "DescribeImages and launchable",
        _fix_ec2_shared_public_images,
    ),
    FidelityFix(
        "autoscaling-balance-zones",
        "an Auto Scaling group spreads its instances evenly over the zones of VPCZoneIdentifier "
        "and scales in from the zone with the most instances",
        _fix_autoscaling_balance_zones,
    ),
    FidelityFix(
        "autoscaling-instance-template-version",
        "each Auto Scaling instance is launched from, tagged with and reported with the launch template "
        "version the group named when it launched, not the template's default version",
        _fix_autoscaling_instance_template_version,
    ),
    FidelityFix(
        "autoscaling-replace-unhealthy",
        "an Auto Scaling instance that is stopped or set Unhealthy is terminated and replaced to get back "
        "to the desired capacity (here: on the next Auto Scaling or EC2 request)",
        _fix_autoscaling_replace_unhealthy,
    ),
    FidelityFix(
        "iam-aws-managed-policies",
        "the AWS managed policies (arn:aws:iam::aws:policy/...) exist in every account",
        _fix_iam_aws_managed_policies,
    ),
    # More EC2, ELBv2 and IAM fixes live in their own modules (tests: tests/test_aws_emulator_ec2.py).
    *EC2_FIXES,
    *ELBV2_FIXES,
    *IAM_FIXES,
)
FIX_NAMES: tuple[str, ...] = tuple(fix.name for fix in FIDELITY_FIXES)


def apply_fidelity_fixes(names: Iterable[str] = FIX_NAMES) -> list[str]:
    """Patch moto with the named fixes (in :data:`FIDELITY_FIXES` order); return the names applied."""
    wanted = set(names)
    unknown = wanted.difference(FIX_NAMES)
    if unknown:
        raise AwsEmulatorError(f"unknown fidelity fix {sorted(unknown)[0]!r}; known: {', '.join(FIX_NAMES)}")
    applied = []
    for fix in FIDELITY_FIXES:
        if fix.name in wanted:
            fix.apply()
            applied.append(fix.name)
    return applied


def _inject_s3_write_delay(seconds: float) -> None:
    """Fault injection for tests, not a fidelity fix: sleep in moto's S3 backend before an object is stored.

    This widens the window between PutObject's precondition check and its write, so that tests can show the
    race that ``s3-atomic-requests`` closes.
    """
    from moto.s3 import models

    s3_backend: Any = models.S3Backend
    put_object = s3_backend.put_object

    def _put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return put_object(self, *args, **kwargs)

    s3_backend.put_object = _put_object


# ---------------------------------------------------------------------------------------------------------
# The server (child process).
# ---------------------------------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise AwsEmulatorError(
            f"the AWS emulator only binds a loopback address (e.g. 127.0.0.1), not {host!r}"
        )


def _with_health(app: WsgiApp, fixes: Sequence[str]) -> WsgiApp:
    health = json.dumps({"status": "ok", "fixes": list(fixes)}).encode()

    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(health)))]
            )
            return [health]
        return app(environ, start_response)

    return wrapper


def _write_ready_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    os.replace(tmp, path)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _exit_on_stdin_eof() -> None:
    """Stop the server when our parent goes away (it holds the write end of our stdin)."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader would make interpreter
        # shutdown abort ("could not acquire lock for <stdin>") when we are stopped by a signal instead.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def serve(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    fixes: Iterable[str] = FIX_NAMES,
    s3_write_delay: float = 0.0,
    ready_file: Path | None = None,
    exit_on_stdin_eof: bool = False,
    verbose: bool = False,
) -> None:
    """Apply the fidelity fixes and serve moto on ``host:port`` until SIGTERM/SIGINT (blocks)."""
    import logging

    _check_loopback(host)
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    applied = apply_fidelity_fixes(fixes)
    if s3_write_delay > 0:
        _inject_s3_write_delay(s3_write_delay)
    if not verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    app = _with_health(DomainDispatcherApplication(create_backend_app), applied)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    bound_port = int(server.socket.getsockname()[1])
    signal.signal(signal.SIGTERM, _interrupt)
    if exit_on_stdin_eof:
        _exit_on_stdin_eof()
    if ready_file is not None:
        _write_ready_file(ready_file, bound_port)
    fix_list = ", ".join(applied) or "none"
    print(f"pykops AWS emulator listening on http://{host}:{bound_port} (fixes: {fix_list})", flush=True)
    server.serve_forever()  # returns (and closes the socket) on KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pykops.sandbox.aws_emulator",
        description="Serve moto (with pykops' fidelity fixes) on a loopback address.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="loopback address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument(
        "--without-fix",
        action="append",
        default=[],
        choices=FIX_NAMES,
        metavar="NAME",
        help=f"leave out a fidelity fix (repeatable; one of: {', '.join(FIX_NAMES)})",
    )
    parser.add_argument("--no-fixes", action="store_true", help="serve plain moto")
    parser.add_argument("--s3-write-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", type=Path, help="write {port, pid} as JSON here once listening")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    fixes = [] if args.no_fixes else [n for n in FIX_NAMES if n not in args.without_fix]
    try:
        serve(
            args.host,
            args.port,
            fixes=fixes,
            s3_write_delay=args.s3_write_delay,
            ready_file=args.ready_file,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
            verbose=args.verbose,
        )
    except AwsEmulatorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------------------------------------
# The Python API (parent process).
# ---------------------------------------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AwsEmulator:
    """The AWS emulator as a child process of ours; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        region: str = DEFAULT_REGION,
        fixes: Iterable[str] = FIX_NAMES,
        s3_write_delay: float = 0.0,
        startup_timeout: float = _STARTUP_TIMEOUT,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self.region = region
        self.fixes = tuple(fixes)
        unknown = set(self.fixes).difference(FIX_NAMES)
        if unknown:
            raise AwsEmulatorError(
                f"unknown fidelity fix {sorted(unknown)[0]!r}; known: {', '.join(FIX_NAMES)}"
            )
        self.s3_write_delay = s3_write_delay
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> AwsEmulator:
        """Start the child on ``port`` (0: a free port chosen by the child) and wait until it answers."""
        if self._proc is not None:
            raise AwsEmulatorError("the AWS emulator is already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="pykops-aws-emulator-"))
        ready_file = self._workdir / "ready.json"
        self._log = open(self._workdir / "emulator.log", "w+b")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable,
            "-m",
            "pykops.sandbox.aws_emulator",
            "--host",
            self.host,
            "--port",
            str(port),
            "--ready-file",
            str(ready_file),
            "--exit-on-stdin-eof",
        ]
        cmd += ["--no-fixes"] if not self.fixes else []
        cmd += [arg for name in FIX_NAMES if name not in self.fixes for arg in ("--without-fix", name)]
        if self.s3_write_delay > 0:
            cmd += ["--s3-write-delay", str(self.s3_write_delay)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        try:
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the child (close its stdin; SIGTERM, SIGKILL if it lingers) and remove its work directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the child's stdin watcher stops the server cleanly
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.port = None

    def __enter__(self) -> AwsEmulator:
        return self if self._proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- use -----------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise AwsEmulatorError("the AWS emulator is not started")
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and pykops) at the emulator with fake credentials.

        ``NO_PROXY``/``no_proxy`` gain the emulator's host so that a configured HTTP proxy is bypassed.
        """
        no_proxy = ",".join(
            part for part in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), self.host) if part
        )
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def health(self) -> dict[str, Any]:
        """The child's health document: ``{"status": "ok", "fixes": [...]}``."""
        with _NO_PROXY.open(self.endpoint_url + HEALTH_PATH, timeout=2) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc

    def reset(self) -> None:
        """Forget every resource in the emulator (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST", data=b"")
        with _NO_PROXY.open(request, timeout=10):
            pass

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote to stdout/stderr."""
        if self._workdir is None:
            return ""
        return tail_file(self._workdir / "emulator.log", lines)

    # -- helpers -------------------------------------------------------------------------------------------

    def _wait_ready(self, ready_file: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while self.port is None:
            self._check_alive()
            if ready_file.exists():
                self.port = int(json.loads(ready_file.read_text())["port"])
                break
            self._check_deadline(deadline)
            time.sleep(0.05)
        while True:
            self._check_alive()
            try:
                if self.health().get("status") == "ok":
                    return
            except (OSError, ValueError):
                pass
            self._check_deadline(deadline)
            time.sleep(0.05)

    def _check_alive(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise AwsEmulatorError(
                f"the AWS emulator exited with code {code} before it was ready; "
                f"its last output:\n{self.log_tail()}"
            )

    def _check_deadline(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise AwsEmulatorError(
                f"the AWS emulator did not answer within {self.startup_timeout:.0f}s; "
                f"its last output:\n{self.log_tail()}"
            )


if __name__ == "__main__":
    sys.exit(main())
