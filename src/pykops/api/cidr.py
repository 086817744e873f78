"""IPv4 CIDR helpers and the automatic subnet CIDR assignment of ``create cluster``.

The assignment reproduces kops' ``assignCIDRsToSubnets`` in ``upup/pkg/fi/cloudup/subnets.go``
(kubernetes/kops, with the splitting helpers ``SplitInto``/``SplitInto{1,2,4,8}`` and ``Overlap`` from
``pkg/util/subnet/subnet.go``), as it has behaved since kops 1.28 (commits "Split network CIDR into bigger
subnets" / "... even bigger subnets", August 2023):

1. Subnets whose CIDR lies outside the network CIDR are ignored (they belong to additional network CIDRs).
   The others are "big" (Public, Private, DualStack) or "little" (Utility) subnets; any CIDR they already
   have is reserved.
2. Big and little subnets are each sorted by zone (stable, so same-zone subnets keep their order).
3. The network is split into 1, 2, 4 or 8 equal blocks: enough for one block per big subnet plus one
   block shared by all little subnets (if there are any). Blocks overlapping a reserved CIDR are dropped.
4. If there are little subnets, the first free block is split into 8 and the little subnets take those
   eighths in order; the big subnets then take the remaining blocks in order.
5. Private subnets with an IPv6 CIDR get no IPv4 CIDR (IPv6-only private subnets).

So a 172.20.0.0/16 network with three public zones gets 172.20.0.0/18, 172.20.64.0/18 and
172.20.128.0/18, and one private zone gets 172.20.128.0/17 plus the utility subnet 172.20.0.0/20: exactly
what kops' ``tests/integration/create_cluster`` expectations (``ha``, ``private``) show.

``legacy=True`` gives the pre-1.28 layout instead, the one in older kops tutorials: always split into 8,
always keep the first eighth for utility subnets (split into 8 again), big subnets take the rest. Three
public zones in 172.20.0.0/16 then get 172.20.32.0/19, 172.20.64.0/19 and 172.20.96.0/19, and utility
subnets get 172.20.0.0/22, 172.20.4.0/22, ...

pykops additionally refuses to hand out a subnet smaller than /28, the smallest subnet AWS allows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pykops.errors import SpecError

SUBNET_TYPES: tuple[str, ...] = ("Public", "Private", "Utility", "DualStack")
_BIG_TYPES = frozenset({"Public", "Private", "DualStack"})
_LITTLE_TYPES = frozenset({"Utility"})

#: AWS rejects subnets smaller than this.
AWS_SMALLEST_SUBNET_PREFIX = 28

CidrLike = str | ipaddress.IPv4Network


# ---------------------------------------------------------------------------------------------------------
# Parsing and comparison


def parse_cidr(s: str, field_path: str = "cidr") -> ipaddress.IPv4Network:
    """Parse an IPv4 CIDR such as ``172.20.0.0/16``.

    Raises :class:`SpecError` ``"<field_path>: invalid CIDR '<s>'"`` (with a hint) for anything else,
    including a bare address, a netmask instead of a prefix length, IPv6, and host bits set (kops'
    validation rejects those too, "Network contains bits outside prefix").
    """
    text = s.strip() if isinstance(s, str) else ""
    message = f"{field_path}: invalid CIDR {s!r}"
    address, slash, prefix = text.partition("/")
    if not slash:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise SpecError(message, hint="expected an IPv4 CIDR such as 172.20.0.0/16") from None
        raise SpecError(message, hint=f"a CIDR needs a prefix length: did you mean '{address}/32'?")
    if not prefix.isdigit() or not prefix.isascii():
        raise SpecError(message, hint="the prefix length must be a number from 0 to 32, as in 172.20.0.0/16")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise SpecError(message, hint="expected an IPv4 CIDR such as 172.20.0.0/16") from None
    raise SpecError(message, hint=f"it has host bits set: did you mean '{loose}'?")


def _net(value: CidrLike, field_path: str = "cidr") -> ipaddress.IPv4Network:
    return value if isinstance(value, ipaddress.IPv4Network) else parse_cidr(value, field_path)


def overlaps(a: CidrLike, b: CidrLike) -> bool:
    """Whether two CIDRs share any address (kops ``subnet.Overlap``)."""
    return _net(a).overlaps(_net(b))


def contains(outer: CidrLike, inner: CidrLike) -> bool:
    """Whether ``inner`` lies entirely inside ``outer`` (kops ``subnet.BelongsTo``); equal CIDRs count."""
    return _net(inner).subnet_of(_net(outer))


def split(network: CidrLike, parts: int) -> list[ipaddress.IPv4Network]:
    """Split ``network`` into ``parts`` (1, 2, 4 or 8, any power of two) equal blocks, lowest first."""
    net = _net(network)
    extra_bits = parts.bit_length() - 1
    if parts < 1 or 1 << extra_bits != parts:
        raise ValueError(f"parts must be a power of two, got {parts}")
    if net.prefixlen + extra_bits > 32:
        raise SpecError(f"network CIDR {net} is too small to split into {parts} subnets")
    return list(net.subnets(prefixlen_diff=extra_bits))


# ---------------------------------------------------------------------------------------------------------
# Assignment


@dataclass(frozen=True)
class SubnetRequest:
    """One cluster subnet as the assignment sees it.

    ``zone`` orders the subnets (kops sorts by zone); it defaults to ``name``. ``cidr`` is set for a subnet
    that already has one (user-given or shared): it is reserved, and counted when sizing the blocks if it
    lies inside the network. ``ipv6`` marks a subnet with an IPv6 CIDR: a Private one gets no IPv4 CIDR.
    """

    name: str
    type: str
    zone: str = ""
    cidr: str | None = None
    ipv6: bool = False

    @property
    def sort_zone(self) -> str:
        return self.zone or self.name


SubnetInput = SubnetRequest | tuple[str, str] | tuple[str, str, str]


def _to_request(item: SubnetInput) -> SubnetRequest:
    if isinstance(item, SubnetRequest):
        return item
    if len(item) == 2:
        return SubnetRequest(name=item[0], type=item[1])
    return SubnetRequest(name=item[0], type=item[1], zone=item[2])


def assign_subnet_cidrs(
    network_cidr: str,
    subnets: Sequence[SubnetInput],
    already_used: Iterable[str] = (),
    *,
    legacy: bool = False,
) -> dict[str, str]:
    """Choose CIDRs for the subnets that lack one, the way kops ``create cluster`` does.

    ``subnets`` are ``(name, type)`` or ``(name, type, zone)`` tuples, or :class:`SubnetRequest` (which can
    also carry an existing CIDR); ``type`` is one of Public, Private, Utility, DualStack. Subnet names must be
    unique. ``already_used`` are CIDRs of other subnets that already exist (shared or user-given): blocks
    overlapping them are skipped, and each one inside the network counts as one Public/Private subnet when
    sizing the blocks, as kops counts such subnets (give a :class:`SubnetRequest` with ``cidr`` to say
    precisely that an existing subnet is a Utility one).

    Returns ``{subnet name: CIDR}`` for every subnet that got one, in input order. Raises
    :class:`SpecError` for a bad network or subnet CIDR, an unknown type, a duplicate name, or a network too
    small to hold the subnets.
    """
    network = parse_cidr(network_cidr, "spec.networkCIDR")
    requests = [_to_request(item) for item in subnets]

    seen: set[str] = set()
    for index, req in enumerate(requests):
        if req.type not in SUBNET_TYPES:
            raise SpecError(
                f"spec.subnets[{index}].type: subnet {req.name!r} has unknown type {req.type!r}",
                hint=f"use one of {', '.join(SUBNET_TYPES)}",
            )
        if req.name in seen:
            raise SpecError(f"spec.subnets[{index}].name: duplicate subnet name {req.name!r}")
        seen.add(req.name)

    big: list[SubnetRequest] = []
    little: list[SubnetRequest] = []
    reserved: list[ipaddress.IPv4Network] = []
    extra_big = 0  # already_used CIDRs inside the network, counted as big subnets
    for index, req in enumerate(requests):
        if req.cidr:
            existing = parse_cidr(req.cidr, f"spec.subnets[{index}].cidr")
            if not legacy and existing.network_address not in network:
                continue  # a subnet of an additional network CIDR: not ours to size around
            reserved.append(existing)
        (little if req.type in _LITTLE_TYPES else big).append(req)
    for index, used in enumerate(already_used):
        existing = parse_cidr(used, f"already_used[{index}]")
        reserved.append(existing)
        if existing.network_address in network:
            extra_big += 1

    if not any(_needs_cidr(req) for req in big + little):
        return {}

    # A consistent order: by zone, keeping the input order within a zone.
    big.sort(key=lambda r: r.sort_zone)
    little.sort(key=lambda r: r.sort_zone)

    if legacy:
        parts = 8
    else:
        count = len(big) + extra_big + (1 if little else 0)
        parts = 1 if count <= 1 else 2 if count <= 2 else 4 if count <= 4 else 8
    blocks = [b for b in split(network, parts) if not any(b.overlaps(r) for r in reserved)]
    if not blocks:
        block_prefix = network.prefixlen + parts.bit_length() - 1
        raise SpecError(
            f"network CIDR {network} is too small: every /{block_prefix} block of it overlaps a subnet "
            "that already exists",
            hint="use a larger --network-cidr or give the subnets explicit CIDRs",
        )

    assigned: dict[str, str] = {}
    if little or legacy:
        little_blocks = split(blocks[0], 8)
        blocks = blocks[1:]
        for req in little:
            if not _needs_cidr(req):
                continue
            if not little_blocks:
                raise _too_small(network, req)
            assigned[req.name] = _checked(little_blocks.pop(0), network, req)
    for req in big:
        if not _needs_cidr(req):
            continue
        if not blocks:
            raise _too_small(network, req)
        assigned[req.name] = _checked(blocks.pop(0), network, req)

    return {req.name: assigned[req.name] for req in requests if req.name in assigned}


def _needs_cidr(req: SubnetRequest) -> bool:
    return not req.cidr and not (req.ipv6 and req.type == "Private")


def _too_small(network: ipaddress.IPv4Network, req: SubnetRequest) -> SpecError:
    return SpecError(
        f"network CIDR {network} is too small: no free block left for subnet {req.name!r}",
        hint="use a larger --network-cidr or give the subnet an explicit CIDR",
    )


def _checked(block: ipaddress.IPv4Network, network: ipaddress.IPv4Network, req: SubnetRequest) -> str:
    if block.prefixlen > AWS_SMALLEST_SUBNET_PREFIX:
        raise SpecError(
            f"network CIDR {network} is too small: subnet {req.name!r} would get {block}, but AWS subnets "
            f"must be /{AWS_SMALLEST_SUBNET_PREFIX} or larger",
            hint="use a larger --network-cidr",
        )
    return str(block)
