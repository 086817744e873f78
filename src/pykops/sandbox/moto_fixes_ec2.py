"""Fidelity fixes for moto's EC2 (see :mod:`pykops.sandbox.aws_emulator`).

Each function patches moto in the emulator's child process (they import moto, so only call them there) and
restores one AWS behaviour that pykops depends on; :data:`EC2_FIXES` lists them, and
``tests/test_aws_emulator_ec2.py`` shows each behaviour over HTTP, with a twin that shows plain moto's.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import copy
import sys
import threading
from typing import Any

from pykops.sandbox.fidelity import FidelityFix

# -- DHCP options --------------------------------------------------------------------------------------------


def _fix_dhcp_options_tags() -> None:
    """Apply ``CreateDhcpOptions``' ``TagSpecifications``.

    moto's handler (``ec2/responses/dhcp_options.py``) never reads them: the set is created untagged, so a
    ``tag:``/``tag-key`` filter cannot find it. AWS tags the set with the request's ``dhcp-options`` tags.
    """
    from moto.ec2.responses.dhcp_options import DHCPOptions

    responses: Any = DHCPOptions
    create_dhcp_options = responses.create_dhcp_options

    def _create_dhcp_options(self: Any) -> Any:
        tags = self._parse_tag_specification("dhcp-options").get("dhcp-options", {})
        result = create_dhcp_options(self)
        if tags:
            result.result["DhcpOptions"].add_tags(tags)
        return result

    responses.create_dhcp_options = _create_dhcp_options


def _fix_dhcp_options_release() -> None:
    """A DHCP options set is in use exactly while a VPC is associated with it.

    moto records one VPC per set (``DHCPOptionsSet.vpc``) and ``AssociateDhcpOptions`` never clears it on the
    set the VPC leaves, so deleting that set fails with ``DependencyViolation`` for ever; and ``DeleteVpc``
    deletes the VPC's set. On AWS ``AssociateDhcpOptions`` (a new set or ``default``) releases the previous
    set, which can then be deleted once no VPC uses it; a set may serve several VPCs; deleting a VPC leaves
    its set in place (still to be deleted).
    """
    from moto.ec2.models.dhcp_options import DHCPOptionsSetBackend
    from moto.ec2.models.vpcs import VPCBackend

    dhcp_backend: Any = DHCPOptionsSetBackend
    vpc_backend: Any = VPCBackend
    delete_dhcp_options_set = dhcp_backend.delete_dhcp_options_set
    delete_vpc = vpc_backend.delete_vpc

    def _user(backend: Any, options: Any) -> Any:
        return next((vpc for vpc in backend.vpcs.values() if vpc.dhcp_options is options), None)

    def _delete_dhcp_options_set(self: Any, options_id: str | None) -> None:
        options = self.dhcp_options_sets.get(options_id) if options_id else None
        if options is not None:
            options.vpc = _user(self, options)  # moto refuses the delete while this is set
        delete_dhcp_options_set(self, options_id)

    def _delete_vpc(self: Any, vpc_id: str) -> Any:
        vpc = self.vpcs.get(vpc_id)
        options = vpc.dhcp_options if vpc is not None else None
        if vpc is not None:
            vpc.dhcp_options = None  # moto would delete the set with the VPC
        try:
            deleted = delete_vpc(self, vpc_id)
        except BaseException:
            if vpc is not None:
                vpc.dhcp_options = options
            raise
        if options is not None:
            options.vpc = _user(self, options)
        return deleted

    dhcp_backend.delete_dhcp_options_set = _delete_dhcp_options_set
    vpc_backend.delete_vpc = _delete_vpc


# -- key pairs -----------------------------------------------------------------------------------------------


def _fix_delete_key_pair_by_id() -> None:
    """Make ``DeleteKeyPair(KeyPairId=...)`` delete the key pair with that id.

    moto's handler reads only ``KeyName``: with ``KeyPairId`` it deletes nothing and answers success. AWS
    deletes the key pair with that id. (An id that names no key pair is answered with success, as moto and AWS
    do for an unknown ``KeyName``.)
    """
    from moto.core.responses import ActionResult
    from moto.ec2.responses.key_pairs import KeyPairs

    responses: Any = KeyPairs
    delete_key_pair = responses.delete_key_pair

    def _delete_key_pair(self: Any) -> Any:
        key_id = self._get_param("KeyPairId")
        if not key_id or self._get_param("KeyName"):
            return delete_key_pair(self)
        self.error_on_dryrun()
        backend = self.ec2_backend
        for key_pair in list(backend.key_pairs.values()):
            if key_pair.id == key_id:
                backend.delete_key_pair(key_pair.key_name)
        return ActionResult({"Return": True, "KeyPairId": key_id})

    responses.delete_key_pair = _delete_key_pair


# -- launch templates ----------------------------------------------------------------------------------------


def _fix_launch_template_current_tags() -> None:
    """Report a launch template's current tags in ``DescribeLaunchTemplates``.

    moto copies the template's tags into ``LaunchTemplate.tags`` when it is created and reports that copy, so
    tags added (or removed) later with ``CreateTags``/``DeleteTags`` are missing from ``Tags`` although the
    ``tag:``/``tag-key`` filters see them. AWS reports the template's tags as they are now.
    """
    from moto.ec2.models.launch_templates import LaunchTemplate

    template_cls: Any = LaunchTemplate

    def _get(self: Any) -> list[dict[str, str]]:
        tags: list[dict[str, str]] = self.get_tags()
        return tags

    def _set(self: Any, value: Any) -> None:
        pass  # moto's __init__ stores its copy here

    template_cls.tags = property(_get, _set)


_PAGE: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("pykops_page", default=None)
_DEFAULT_PAGE_SIZE = 15  # moto's MaxResults default for both calls
_TOKEN_PREFIX = "pykops-page:"


def _page_start(token: str | None) -> int:
    from moto.ec2.exceptions import EC2ClientError

    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if text.startswith(_TOKEN_PREFIX):
            return max(0, int(text[len(_TOKEN_PREFIX) :]))
    except (ValueError, binascii.Error):
        pass
    raise EC2ClientError("InvalidPaginationToken", f"The pagination token {token!r} is not valid.")


def _page_token(start: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{start}".encode()).decode()


def _fix_launch_template_pagination() -> None:
    """Paginate ``DescribeLaunchTemplates`` and ``DescribeLaunchTemplateVersions`` with ``NextToken``.

    moto returns the first ``MaxResults`` items (15 when not given), never a ``NextToken``, and ignores the
    ``NextToken`` of the request: a paginating caller silently misses the rest. AWS answers a page of at most
    ``MaxResults`` items and, while more remain, a ``NextToken`` for the next page. (The page size without
    ``MaxResults`` stays moto's 15.)
    """
    from moto.ec2.models.launch_templates import LaunchTemplateBackend
    from moto.ec2.responses.launch_templates import LaunchTemplates

    responses: Any = LaunchTemplates
    backend_cls: Any = LaunchTemplateBackend
    describe_templates = responses.describe_launch_templates
    describe_versions = responses.describe_launch_template_versions
    backend_templates = backend_cls.describe_launch_templates
    backend_versions = backend_cls.describe_launch_template_versions

    def _paginated(handler: Any) -> Any:
        def _handler(self: Any) -> Any:
            page = {"start": _page_start(self._get_param("NextToken")), "total": 0}
            page["size"] = self._get_int_param("MaxResults", _DEFAULT_PAGE_SIZE)
            token = _PAGE.set(page)
            try:
                result = handler(self)
            finally:
                _PAGE.reset(token)
            end = page["start"] + page["size"]
            if page["total"] > end:
                result.result["NextToken"] = _page_token(end)
            return result

        return _handler

    def _backend_templates(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        templates: list[Any] = backend_templates(self, *args, **kwargs)
        page = _PAGE.get()
        if page is None:
            return templates
        page["total"] = len(templates)
        return templates[page["start"] :]  # the handler cuts the page at MaxResults

    def _backend_versions(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        page = _PAGE.get()
        if page is None:
            return list(backend_versions(self, *args, **kwargs))
        kwargs["max_results"] = sys.maxsize  # every matching version; this wrapper cuts the page
        versions: list[Any] = backend_versions(self, *args, **kwargs)
        page["total"] = len(versions)
        return versions[page["start"] : page["start"] + page["size"]]

    responses.describe_launch_templates = _paginated(describe_templates)
    responses.describe_launch_template_versions = _paginated(describe_versions)
    backend_cls.describe_launch_templates = _backend_templates
    backend_cls.describe_launch_template_versions = _backend_versions


# -- client tokens -------------------------------------------------------------------------------------------

_CLIENT_TOKEN_LOCK = threading.RLock()
_IGNORED_PARAMS = frozenset({"Action", "Version", "ClientToken", "DryRun"})


def _idempotent(handler: Any, action: str) -> Any:
    """``handler`` (an EC2 response method) made idempotent per ``ClientToken`` within account and region."""
    from moto.ec2.exceptions import EC2ClientError

    def _handler(self: Any) -> Any:
        token = self._get_param("ClientToken")
        if not token:
            return handler(self)
        # A deep copy: moto's handlers modify the parsed parameters (CreateLaunchTemplate adds UserData).
        params = copy.deepcopy({k: v for k, v in self._get_params().items() if k not in _IGNORED_PARAMS})
        backend = self.ec2_backend
        with _CLIENT_TOKEN_LOCK:
            # In the backend's __dict__: moto's reset (which rebuilds it) forgets the tokens too.
            seen = backend.__dict__.setdefault("_pykops_client_tokens", {})
            first = seen.get((action, token))
            if first is not None:
                first_params, first_result = first
                if first_params != params:
                    raise EC2ClientError(
                        "IdempotentParameterMismatch",
                        f"The client token {token!r} was used by a {action} request with other parameters.",
                    )
                return first_result
            result = handler(self)
            seen[(action, token)] = (params, result)
            return result

    return _handler


def _fix_client_token_idempotency() -> None:
    """Honour ``ClientToken`` in ``CreateNatGateway``, ``CreateLaunchTemplate`` and ``CreateVolume``.

    moto ignores the token: a repeated ``CreateNatGateway`` or ``CreateVolume`` makes a second resource, a
    repeated ``CreateLaunchTemplate`` fails with ``InvalidLaunchTemplateName.AlreadyExistsException``. On AWS
    a request repeated with the same token and the same parameters creates nothing and returns the resource
    the first request made (also when it has been deleted since); with other parameters it fails with
    ``IdempotentParameterMismatch``. This is what makes retrying a create after a lost response safe. Tokens
    are remembered per account and region until the emulator is reset.
    """
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore
    from moto.ec2.responses.launch_templates import LaunchTemplates
    from moto.ec2.responses.nat_gateways import NatGateways

    for response_cls, method, action in (
        (NatGateways, "create_nat_gateway", "CreateNatGateway"),
        (LaunchTemplates, "create_launch_template", "CreateLaunchTemplate"),
        (ElasticBlockStore, "create_volume", "CreateVolume"),
    ):
        klass: Any = response_cls
        setattr(klass, method, _idempotent(getattr(klass, method), action))


# -- NAT gateways --------------------------------------------------------------------------------------------


def _fix_nat_gateway_tag_filters() -> None:
    """Apply the ``tag:<key>``, ``tag-key`` and ``tag-value`` filters of ``DescribeNatGateways``.

    moto's ``describe_nat_gateways`` knows only the ``nat-gateway-id``, ``vpc-id``, ``subnet-id`` and
    ``state`` filters and silently ignores the rest, so a tag filter returns every gateway. AWS returns only
    the gateways whose tags match.
    """
    from moto.ec2.models.nat_gateways import NatGatewayBackend
    from moto.ec2.utils import is_tag_filter, tag_filter_matches

    backend_cls: Any = NatGatewayBackend
    describe_nat_gateways = backend_cls.describe_nat_gateways

    def _describe_nat_gateways(self: Any, filters: Any, nat_gateway_ids: list[str] | None) -> list[Any]:
        gateways: list[Any] = describe_nat_gateways(self, filters, nat_gateway_ids)
        for name, values in (filters or {}).items():
            if is_tag_filter(name):
                gateways = [gateway for gateway in gateways if tag_filter_matches(gateway, name, values)]
        return gateways

    backend_cls.describe_nat_gateways = _describe_nat_gateways


def _fix_delete_unknown_nat_gateway() -> None:
    """Answer ``DeleteNatGateway`` of an unknown id with 400 ``NatGatewayNotFound``.

    moto looks the id up with ``dict.get`` and sets ``state`` on the ``None`` it gets: HTTP 500. AWS answers
    400 ``NatGatewayNotFound``.
    """
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.nat_gateways import NatGatewayBackend

    backend_cls: Any = NatGatewayBackend
    delete_nat_gateway = backend_cls.delete_nat_gateway

    def _delete_nat_gateway(self: Any, nat_gateway_id: str) -> Any:
        if nat_gateway_id not in self.nat_gateways:
            raise EC2ClientError("NatGatewayNotFound", f"The Nat Gateway {nat_gateway_id} was not found")
        return delete_nat_gateway(self, nat_gateway_id)

    backend_cls.delete_nat_gateway = _delete_nat_gateway


# -- volumes -------------------------------------------------------------------------------------------------

# The instance states in which AWS lets a volume be attached ("pending": moto attaches the root volume itself
# while it builds an instance).
_ATTACHABLE_STATES = frozenset({"pending", "running", "stopped"})


def _fix_attach_volume_checks() -> None:
    """Refuse ``AttachVolume`` where AWS refuses it.

    moto attaches any volume to any instance: one already attached elsewhere (leaving a stale block device on
    the first instance), one in another availability zone, and one to a terminated instance, where the
    attachment then outlives the instance and the volume can never be deleted (``VolumeInUse``). AWS answers
    ``VolumeInUse``, ``InvalidVolume.ZoneMismatch`` and ``IncorrectState`` respectively. The last one matters
    to the sandbox: its simulated EBS CSI controller may try to attach a volume to a node whose instance
    ``delete cluster`` has just terminated, and must be told no, as the real driver would be.
    """
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_block_store import EBSBackend

    backend_cls: Any = EBSBackend
    attach_volume = backend_cls.attach_volume

    def _attach_volume(
        self: Any, volume_id: str, instance_id: str, device_path: str, delete_on_termination: bool = False
    ) -> Any:
        volume = self.get_volume(volume_id)
        instance = self.get_instance(instance_id)
        if volume is not None and instance is not None:
            state = instance._state.name
            if state not in _ATTACHABLE_STATES:
                raise EC2ClientError("IncorrectState", f"Instance '{instance_id}' is not 'running'.")
            if volume.attachment is not None:
                raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
            volume_zone = volume.zone.name if volume.zone else None
            if volume_zone and instance.availability_zone and volume_zone != instance.availability_zone:
                raise EC2ClientError(
                    "InvalidVolume.ZoneMismatch",
                    f"The volume '{volume_id}' is not in the same availability zone as instance "
                    f"'{instance_id}'",
                )
        return attach_volume(self, volume_id, instance_id, device_path, delete_on_termination)

    backend_cls.attach_volume = _attach_volume


# -- security groups -----------------------------------------------------------------------------------------

# The protocols whose rules have a port range (or ICMP type/code); any other protocol number: all ports.
_PORT_PROTOCOLS = frozenset({"tcp", "6", "udp", "17", "icmp", "1", "icmpv6", "58", "-1", "all"})


def _fix_security_group_protocol_without_ports() -> None:
    """Accept a security group rule for a protocol number without ports (e.g. ``4``, IP-in-IP) and no ports.

    moto converts ``FromPort``/``ToPort`` with ``int()`` for every protocol but ``-1``, so a rule for protocol
    ``4`` without ports fails with HTTP 500 (``int(None)``) in ``AuthorizeSecurityGroupIngress``/``Egress``.
    AWS accepts it: for a protocol other than tcp, udp, icmp and icmpv6 the rule allows all ports, and any
    port range given is ignored (the rule has none, reported as ``-1`` by ``DescribeSecurityGroupRules``).
    """
    from moto.ec2.models.security_groups import SecurityGroupRule

    rule_cls: Any = SecurityGroupRule
    init = rule_cls.__init__

    def __init__(
        self: Any,
        ec2_backend: Any,
        ip_protocol: str,
        group_id: str,
        from_port: str | None,
        to_port: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        portless = bool(ip_protocol) and str(ip_protocol).lower() not in _PORT_PROTOCOLS
        if portless:
            from_port = to_port = "-1"
        init(self, ec2_backend, ip_protocol, group_id, from_port, to_port, *args, **kwargs)
        if portless:
            self.from_port = self.to_port = None

    rule_cls.__init__ = __init__


EC2_FIXES: tuple[FidelityFix, ...] = (
    FidelityFix(
        "ec2-dhcp-options-tags",
        "CreateDhcpOptions tags the new set with the dhcp-options tags of TagSpecifications",
        _fix_dhcp_options_tags,
    ),
    FidelityFix(
        "ec2-dhcp-options-release",
        "AssociateDhcpOptions releases the VPC's previous DHCP options set, which can be deleted once no VPC "
        "uses it; DeleteVpc leaves the VPC's set in place",
        _fix_dhcp_options_release,
    ),
    FidelityFix(
        "ec2-delete-key-pair-by-id",
        "DeleteKeyPair with KeyPairId deletes the key pair with that id",
        _fix_delete_key_pair_by_id,
    ),
    FidelityFix(
        "ec2-launch-template-current-tags",
        "DescribeLaunchTemplates reports a template's current tags, also those added later with CreateTags",
        _fix_launch_template_current_tags,
    ),
    FidelityFix(
        "ec2-nat-gateway-tag-filters",
        "DescribeNatGateways applies the tag:<key>, tag-key and tag-value filters",
        _fix_nat_gateway_tag_filters,
    ),
    FidelityFix(
        "ec2-client-token-idempotency",
        "CreateNatGateway, CreateLaunchTemplate and CreateVolume repeated with the same ClientToken return "
        "what the first request made (IdempotentParameterMismatch if the parameters differ)",
        _fix_client_token_idempotency,
    ),
    FidelityFix(
        "ec2-delete-unknown-nat-gateway",
        "DeleteNatGateway of an unknown id answers 400 NatGatewayNotFound",
        _fix_delete_unknown_nat_gateway,
    ),
    FidelityFix(
        "ec2-security-group-protocol-without-ports",
        "a security group rule for a protocol number other than tcp/udp/icmp/icmpv6 (e.g. 4) needs no "
        "FromPort/ToPort: it allows all ports",
        _fix_security_group_protocol_without_ports,
    ),
    FidelityFix(
        "ec2-attach-volume-checks",
        "AttachVolume refuses a terminated or shutting-down instance with IncorrectState, a "
        "volume attached elsewhere with VolumeInUse and another zone's instance with "
        "InvalidVolume.ZoneMismatch",
        _fix_attach_volume_checks,
    ),
    FidelityFix(
        "ec2-launch-template-pagination",
        "DescribeLaunchTemplates and DescribeLaunchTemplateVersions paginate with NextToken",
        _fix_launch_template_pagination,
    ),
)
