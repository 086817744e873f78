"""Keysets (CAs and signing keys) in the state store, in kops' layout and format.

kops facts kept here:

* layout (``upup/pkg/fi/vfs_castore.go``, ``vfs_keystorereader.go``, ``pkg/client/simple/vfsclientset``):
  ``<cluster>/pki/private/<name>/keyset.yaml``, one file per keyset holding every item, public and
  private material, and the primary id. kops ≥ 1.19 writes nothing else (no ``pki/issued/`` copies);
  ``ListKeysets`` reads exactly ``private/<name>/keyset.yaml``. Legacy names are read as a fallback:
  ``ca`` for ``kubernetes-ca`` and ``master`` for ``service-account``.
* format (``pkg/apis/kops/v1alpha2/keyset.go``, ``vfs_castore_test.go``)::

      apiVersion: kops.k8s.io/v1alpha2
      kind: Keyset
      metadata:
        name: kubernetes-ca
      spec:
        keys:
        - id: "2370..."                 # the certificate's serial number, decimal
          privateMaterial: <base64 PEM>  # PKCS#1 RSA key
          publicMaterial: <base64 PEM>   # certificate
          distrustTimestamp: <RFC 3339>  # only on distrusted items
        primaryId: "2370..."
        type: Keypair

* the primary (``FindPrimary``, ``clientset_castore.go``): the item whose id is ``primaryId`` unless it
  is distrusted, else the trusted item with the highest numeric id; items sort oldest first by numeric id
  (``KeysetItemIdOlder``); the CA bundle is the trusted items' certificates, oldest first.
* names (``pkg/model/pki.go``, ``pkg/model/components/etcdmanager/model.go``): ``kubernetes-ca``,
  ``apiserver-aggregator-ca``, ``service-account``, ``etcd-clients-ca`` (shared by main/events),
  ``etcd-manager-ca-<etcd cluster>``, ``etcd-peers-ca-<etcd cluster>``, ``etcd-clients-ca-cilium`` for an
  etcd cluster named ``cilium``, and ``discovery-ca`` when a discovery service URL is set.
* leaf keysets (kops <= 1.18 ``pkg/model/pki.go``, "fetched" node credentials): ``kubelet`` (client,
  ``O=system:nodes, CN=kubelet``) and ``kube-proxy`` (client, ``CN=system:kube-proxy``), issued from
  ``kubernetes-ca`` and stored like the CAs, in ``pki/private/<name>/keyset.yaml``. Worker nodes read these
  instead of the CA's private key, so a node can never mint other identities (``system:masters``...). The
  shared ``kubelet`` identity is not a ``system:node:<name>`` user: the Node authorizer ignores it and RBAC
  grants it the ``system:node`` role (nodeup renders that binding on the control plane).

Keysets are written with ``secret=True`` (0600 in a ``file://`` store, SSE on S3), created with a
conditional create (two racing creators: the first wins, the second reads and uses the winner's) and
changed with conditional updates. Private material never appears in ``repr`` or in :class:`KeysetInfo`.
"""

from __future__ import annotations

import base64
import binascii
import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from pykops.errors import ConflictError, NotFoundError, PykopsError, StateStoreError
from pykops.pki.ca import (
    CA_VALIDITY,
    Keypair,
    PKIError,
    Usage,
    issue,
    load_certificate,
    load_keypair,
    new_ca,
    new_serial,
)
from pykops.pki.ca import new_service_account_key as _new_service_account_key
from pykops.state.store import StateStore

if TYPE_CHECKING:
    from pykops.api.models import Cluster

# ``ca``: a self-signed CA; ``rsa``: the service-account signing key; ``leaf``: a certificate issued from a
# CA (:data:`LEAF_KEYSETS` says which CA and which subject).
KeysetKind = Literal["ca", "rsa", "leaf"]

API_VERSION = "kops.k8s.io/v1alpha2"
KIND = "Keyset"
KEYSET_FILE = "keyset.yaml"

KUBERNETES_CA = "kubernetes-ca"
APISERVER_AGGREGATOR_CA = "apiserver-aggregator-ca"
SERVICE_ACCOUNT = "service-account"
ETCD_CLIENTS_CA = "etcd-clients-ca"
DISCOVERY_CA = "discovery-ca"
KUBELET = "kubelet"
KUBE_PROXY = "kube-proxy"

# kops reads these older names when the new one is missing (vfs_keystorereader.go legacyKeysetMappings).
LEGACY_NAMES = {SERVICE_ACCOUNT: "master", KUBERNETES_CA: "ca"}


@dataclass(frozen=True)
class LeafSpec:
    """How a leaf keyset's certificate is issued: by the primary of keyset ``issuer``."""

    issuer: str
    common_name: str
    organization: tuple[str, ...] = ()
    usage: Usage = "client"


# kops <= 1.18 pkg/model/pki.go: "kubelet" (o=system:nodes, cn=kubelet) and "kube-proxy"
# (cn=system:kube-proxy), both client certificates from the cluster CA.
LEAF_KEYSETS: dict[str, LeafSpec] = {
    KUBELET: LeafSpec(KUBERNETES_CA, "kubelet", ("system:nodes",)),
    KUBE_PROXY: LeafSpec(KUBERNETES_CA, "system:kube-proxy"),
}
# Nodes cannot renew these, so they live as long as the CA allows (issue() caps NotAfter at the CA's);
# replace them with Keystore.reissue (rotation), e.g. after rotating the CA.
LEAF_VALIDITY = CA_VALIDITY


def _id_sort_key(item_id: str) -> tuple[int, int, str]:
    """kops' ``KeysetItemIdOlder``: numeric ids by value, after non-numeric ones (sorted as text)."""
    if item_id.isdigit():
        return (1, int(item_id), "")
    return (0, 0, item_id)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KeysetItem:
    """One certificate (``cert_pem``) and, usually, its private key (``key_pem``, never in ``repr``)."""

    id: str
    cert_pem: bytes = field(repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    distrust_timestamp: datetime | None = None

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert_pem)

    @property
    def has_private_key(self) -> bool:
        return bool(self.key_pem)

    @property
    def trusted(self) -> bool:
        return self.distrust_timestamp is None

    def keypair(self) -> Keypair:
        """The item as a :class:`Keypair` (for signing); refused for a certificate-only item."""
        if not self.key_pem:
            raise PKIError(f"keyset item {self.id} has no private key; it cannot sign")
        return Keypair(cert_pem=self.cert_pem, key_pem=self.key_pem, id=self.id)


@dataclass(frozen=True)
class Keyset:
    """A named set of keypairs with one primary (the one used to sign), ready for rotation.

    ``items`` are sorted oldest first; ``version`` is the state-store version it was read at (used for
    conditional updates; ``None`` for a keyset not stored yet).
    """

    name: str
    items: tuple[KeysetItem, ...]
    primary_id: str
    version: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(sorted(self.items, key=lambda i: _id_sort_key(i.id))))

    def __repr__(self) -> str:
        ids = ", ".join(i.id for i in self.items)
        return f"Keyset(name={self.name!r}, primary_id={self.primary_id!r}, items=[{ids}])"

    # --- reading ---------------------------------------------------------------------------------------
    def item(self, item_id: str) -> KeysetItem:
        for it in self.items:
            if it.id == item_id:
                return it
        raise NotFoundError(
            f"keyset {self.name} has no item {item_id} (items: {', '.join(i.id for i in self.items)})"
        )

    @property
    def primary(self) -> KeysetItem:
        """kops' ``FindPrimary``: the trusted item named by ``primary_id``, else the newest trusted one."""
        best: KeysetItem | None = None
        for it in self.items:
            if not it.trusted or not it.id.isdigit():
                continue
            if it.id == self.primary_id:
                return it
            if best is None or int(it.id) > int(best.id):
                best = it
        if best is None:
            raise PKIError(f"keyset {self.name} has no trusted item")
        return best

    def primary_keypair(self) -> Keypair:
        return self.primary.keypair()

    def ca_bundle(self) -> bytes:
        """The trusted items' certificates, oldest first (kops' ``ToCertificateBytes``)."""
        return b"".join(_ensure_newline(it.cert_pem) for it in self.items if it.trusted)

    # --- rotation (pure: return a new Keyset; store it with Keystore.replace) ---------------------------
    def with_item(self, keypair: Keypair, *, primary: bool = False) -> Keyset:
        """This keyset plus ``keypair``; with ``primary`` it becomes the primary.

        As kops' ``AddItem``: the id is the certificate's serial unless that is taken, or (for a new
        primary) not newer than every existing id; then a fresh time-based serial is used.
        """
        taken = {it.id for it in self.items}
        highest = max((int(i) for i in taken if i.isdigit()), default=0)
        item_id = keypair.id
        if item_id in taken or not item_id.isdigit() or (primary and int(item_id) <= highest):
            item_id = str(max(new_serial(), highest + 1))
        new_item = KeysetItem(id=item_id, cert_pem=keypair.cert_pem, key_pem=keypair.key_pem)
        return replace(
            self, items=(*self.items, new_item), primary_id=item_id if primary else self.primary_id
        )

    def with_primary(self, item_id: str) -> Keyset:
        """This keyset with ``item_id`` as the primary; it must be trusted and hold its private key."""
        it = self.item(item_id)
        if not it.trusted:
            raise PykopsError(f"keyset {self.name}: item {item_id} is distrusted; it cannot be the primary")
        if not it.has_private_key:
            raise PykopsError(f"keyset {self.name}: item {item_id} has no private key; it cannot be primary")
        return replace(self, primary_id=item_id)

    def with_distrusted(self, item_id: str, when: datetime | None = None) -> Keyset:
        """This keyset with ``item_id`` distrusted (no longer in the CA bundle); the primary is refused."""
        if item_id == self.primary.id:
            raise PykopsError(
                f"keyset {self.name}: item {item_id} is the primary; promote another item first"
            )
        self.item(item_id)
        stamp = (when or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        items = tuple(replace(it, distrust_timestamp=stamp) if it.id == item_id else it for it in self.items)
        return replace(self, items=items)

    # --- kops YAML -------------------------------------------------------------------------------------
    def to_yaml(self) -> bytes:
        keys: list[dict[str, Any]] = []
        for it in self.items:
            entry: dict[str, Any] = {"id": it.id}
            if it.distrust_timestamp is not None:
                entry["distrustTimestamp"] = _rfc3339(it.distrust_timestamp)
            if it.key_pem:
                entry["privateMaterial"] = base64.b64encode(it.key_pem).decode()
            entry["publicMaterial"] = base64.b64encode(it.cert_pem).decode()
            keys.append(entry)
        doc = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name},
            "spec": {"keys": keys, "primaryId": self.primary_id, "type": "Keypair"},
        }
        return yaml.safe_dump(doc, sort_keys=True, width=1 << 20).encode()

    @classmethod
    def from_yaml(cls, data: bytes, source: str, *, version: str | None = None) -> Keyset:
        try:
            doc = yaml.safe_load(data.decode())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise StateStoreError(f"{source}: not a Keyset (bad YAML: {exc})") from None
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise StateStoreError(f"{source}: not a kops Keyset (kind is not {KIND})")
        if not str(doc.get("apiVersion", "")).startswith("kops.k8s.io/"):
            raise StateStoreError(f"{source}: unsupported apiVersion {doc.get('apiVersion')!r}")
        name = str((doc.get("metadata") or {}).get("name") or "")
        spec = doc.get("spec") or {}
        items: list[KeysetItem] = []
        for n, entry in enumerate(spec.get("keys") or []):
            if not isinstance(entry, dict) or "id" not in entry:
                raise StateStoreError(f"{source}: keys[{n}] has no id")
            try:
                public = base64.b64decode(entry.get("publicMaterial") or "", validate=True)
                private = base64.b64decode(entry.get("privateMaterial") or "", validate=True)
            except (binascii.Error, ValueError):
                raise StateStoreError(f"{source}: keys[{n}] has corrupt base64 material") from None
            distrust = _timestamp(entry.get("distrustTimestamp"), f"{source}: keys[{n}].distrustTimestamp")
            if not public:
                continue  # kops skips items without a certificate when listing; nothing here can use them
            items.append(
                KeysetItem(
                    id=str(entry["id"]),
                    cert_pem=public,
                    key_pem=private or None,
                    distrust_timestamp=distrust,
                )
            )
        if not items:
            raise StateStoreError(f"{source}: the keyset has no items")
        return cls(
            name=name, items=tuple(items), primary_id=str(spec.get("primaryId") or ""), version=version
        )

    @classmethod
    def new(cls, name: str, keypair: Keypair) -> Keyset:
        return cls(
            name=name,
            items=(KeysetItem(keypair.id, keypair.cert_pem, keypair.key_pem),),
            primary_id=keypair.id,
        )


def _timestamp(value: object, where: str) -> datetime | None:
    """An RFC 3339 time as kops writes it (YAML may already have parsed it into a datetime)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise StateStoreError(f"{where}: not an RFC 3339 time: {value!r}") from None
    if not isinstance(value, datetime):
        raise StateStoreError(f"{where}: not an RFC 3339 time: {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ensure_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


@dataclass(frozen=True)
class KeysetInfo:
    """Public facts about one keyset item (kops' ``get keypairs`` fields); no private material."""

    name: str
    id: str
    is_primary: bool
    has_private_key: bool
    subject: str
    issuer: str
    is_ca: bool
    not_before: datetime
    not_after: datetime
    alternate_names: tuple[str, ...] = ()
    key_length: int | None = None
    distrust_timestamp: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """kops' JSON field names (``get keypairs -o json``), false/empty fields left out as kops does."""
        out: dict[str, Any] = {"name": self.name, "id": self.id}
        if self.distrust_timestamp is not None:
            out["distrustTimestamp"] = _rfc3339(self.distrust_timestamp)
        if self.is_primary:
            out["isPrimary"] = True
        out["subject"] = self.subject
        out["issuer"] = self.issuer
        if self.alternate_names:
            out["alternateNames"] = list(self.alternate_names)
        if self.is_ca:
            out["isCA"] = True
        out["notBefore"] = _rfc3339(self.not_before)
        out["notAfter"] = _rfc3339(self.not_after)
        if self.key_length is not None:
            out["keyLength"] = self.key_length
        if self.has_private_key:
            out["hasPrivateKey"] = True
        return out


def keyset_info(keyset: Keyset) -> list[KeysetInfo]:
    primary = keyset.primary.id
    out: list[KeysetInfo] = []
    for it in keyset.items:
        cert = it.certificate
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = basic.ca
        except x509.ExtensionNotFound:
            is_ca = False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            alt = sorted(
                [
                    *san.get_values_for_type(x509.DNSName),
                    *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
                ]
            )
        except x509.ExtensionNotFound:
            alt = []
        public = cert.public_key()
        out.append(
            KeysetInfo(
                name=keyset.name,
                id=it.id,
                is_primary=it.id == primary,
                has_private_key=it.has_private_key,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                is_ca=is_ca,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                alternate_names=tuple(alt),
                key_length=public.key_size if isinstance(public, rsa.RSAPublicKey) else None,
                distrust_timestamp=it.distrust_timestamp,
            )
        )
    return out


def cluster_keyset_names(cluster: Cluster) -> dict[str, KeysetKind]:
    """The keysets a cluster needs (name → kind), given its etcd clusters; pass the completed spec.

    Issuers come before the leaf keysets they issue (``kubernetes-ca`` before ``kubelet``).
    """
    names: dict[str, KeysetKind] = {
        KUBERNETES_CA: "ca",
        KUBELET: "leaf",
        KUBE_PROXY: "leaf",
        APISERVER_AGGREGATOR_CA: "ca",
        SERVICE_ACCOUNT: "rsa",
    }
    discovery = cluster.spec.service_account_issuer_discovery
    if discovery and discovery.discovery_service and discovery.discovery_service.url:
        names[DISCOVERY_CA] = "ca"
    etcd_clusters = [e.name for e in cluster.spec.etcd_clusters or [] if e.name]
    if etcd_clusters:
        names[ETCD_CLIENTS_CA] = "ca"
    for etcd in etcd_clusters:
        names[f"etcd-manager-ca-{etcd}"] = "ca"
        names[f"etcd-peers-ca-{etcd}"] = "ca"
        if etcd == "cilium":
            names["etcd-clients-ca-cilium"] = "ca"
    return names


def new_keypair(name: str, kind: KeysetKind) -> Keypair:
    if kind == "ca":
        return new_ca(name)
    if kind == "rsa":
        return _new_service_account_key(name)
    if kind == "leaf":
        raise PykopsError(f"keyset {name} is issued from a CA: use Keystore.ensure_leaf or new_leaf_keypair")
    raise PykopsError(f"unknown keyset kind {kind!r}; expected ca, rsa or leaf")


def leaf_spec(name: str) -> LeafSpec:
    spec = LEAF_KEYSETS.get(name)
    if spec is None:
        raise PykopsError(f"keyset {name} is not a leaf keyset (known: {', '.join(sorted(LEAF_KEYSETS))})")
    return spec


def new_leaf_keypair(name: str, ca: Keypair) -> Keypair:
    """A new key and certificate for the leaf keyset ``name`` (:data:`LEAF_KEYSETS`), signed by ``ca``."""
    spec = leaf_spec(name)
    return issue(
        ca,
        common_name=spec.common_name,
        organization=spec.organization,
        usage=spec.usage,
        validity=LEAF_VALIDITY,
    )


class Keystore:
    """The keysets of one cluster in a state store; see the module docstring."""

    def __init__(self, store: StateStore, cluster: str) -> None:
        self.store = store
        self.cluster = cluster

    @property
    def base(self) -> str:
        return f"{self.cluster}/pki/private"

    def key(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise PykopsError(f"invalid keyset name {name!r}")
        return f"{self.base}/{name}/{KEYSET_FILE}"

    # --- reading ---------------------------------------------------------------------------------------
    def _read(self, name: str) -> Keyset | None:
        key = self.key(name)
        found = self.store.read(key)
        if found is None:
            return None
        keyset = Keyset.from_yaml(found.data, f"{self.store.url}/{key}", version=found.version)
        return replace(keyset, name=name)

    def get(self, name: str) -> Keyset | None:
        """The keyset ``name`` (or its pre-1.22 kops name), or ``None``."""
        keyset = self._read(name)
        if keyset is None and name in LEGACY_NAMES:
            legacy = self._read(LEGACY_NAMES[name])
            if legacy is not None:
                return replace(legacy, name=name, version=None)
        return keyset

    def require(self, name: str) -> Keyset:
        keyset = self.get(name)
        if keyset is None:
            raise NotFoundError(
                f"keyset {name} not found for cluster {self.cluster} in {self.store.url}; "
                f"it is created by: pykops update cluster {self.cluster} --yes"
            )
        return keyset

    def names(self) -> builtins.list[str]:
        prefix = f"{self.base}/"
        out = []
        for key in self.store.list(prefix):
            parts = key[len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == KEYSET_FILE:
                out.append(parts[0])
        return sorted(out)

    def list(self, names: Iterable[str] = ()) -> builtins.list[KeysetInfo]:
        """Public facts about every item of every keyset (or of ``names``), sorted by name then age."""
        wanted = set(names)
        out: builtins.list[KeysetInfo] = []
        for name in self.names():
            if wanted and name not in wanted:
                continue
            keyset = self._read(name)
            if keyset is not None:
                out.extend(keyset_info(keyset))
        return out

    # --- writing ---------------------------------------------------------------------------------------
    def create(self, keyset: Keyset) -> Keyset:
        """Store a new keyset; ConflictError if it exists."""
        self._check(keyset)
        version = self.store.create(self.key(keyset.name), keyset.to_yaml(), secret=True)
        return replace(keyset, version=version)

    def ensure(self, name: str, kind: KeysetKind = "ca") -> Keyset:
        """The keyset ``name``, created (a new CA, for ``rsa`` a signing key, for ``leaf`` a certificate
        issued by its CA, see :meth:`ensure_leaf`) if missing.

        Creation is conditional: if someone else creates it first, theirs is read and returned.
        """
        if kind == "leaf":
            return self.ensure_leaf(name)
        existing = self.get(name)
        if existing is not None:
            return existing
        return self._create_or_read_winner(Keyset.new(name, new_keypair(name, kind)))

    def ensure_leaf(self, name: str) -> Keyset:
        """The leaf keyset ``name`` (``kubelet``, ``kube-proxy``), issued from the current primary of its
        CA if missing (the CA must exist: see :meth:`ensure_cluster_keysets`). Created once, conditionally."""
        spec = leaf_spec(name)
        existing = self.get(name)
        if existing is not None:
            return existing
        ca = self.require(spec.issuer).primary_keypair()
        return self._create_or_read_winner(Keyset.new(name, new_leaf_keypair(name, ca)))

    def _create_or_read_winner(self, candidate: Keyset) -> Keyset:
        try:
            return self.create(candidate)
        except ConflictError:
            winner = self.get(candidate.name)
            if winner is None:  # created and deleted again meanwhile: give up loudly
                raise
            return winner

    def ensure_cluster_keysets(self, cluster: Cluster) -> dict[str, Keyset]:
        """Every keyset the cluster needs (:func:`cluster_keyset_names`), created where missing."""
        return {name: self.ensure(name, kind) for name, kind in cluster_keyset_names(cluster).items()}

    def reissue(self, name: str) -> Keyset:
        """Rotate the leaf keyset ``name``: a new certificate from its CA's current primary becomes the
        primary (the old item stays until distrusted). Machines pick it up the next time they run nodeup."""
        ca = self.require(leaf_spec(name).issuer).primary_keypair()
        return self.add_item(name, new_leaf_keypair(name, ca), primary=True)

    def replace(self, keyset: Keyset) -> Keyset:
        """Store a changed keyset read earlier; ConflictError if it changed since (re-read and retry)."""
        self._check(keyset)
        if keyset.version is None:
            raise PykopsError(f"keyset {keyset.name} was not read from the store; use create")
        version = self.store.update(
            self.key(keyset.name), keyset.to_yaml(), expected_version=keyset.version, secret=True
        )
        return replace(keyset, version=version)

    def add_item(self, name: str, keypair: Keypair, *, primary: bool = False) -> Keyset:
        """Add ``keypair`` to the stored keyset ``name`` (rotation: add, then promote with set_primary)."""
        load_keypair(keypair.cert_pem, keypair.key_pem)
        return self.replace(self._stored(name).with_item(keypair, primary=primary))

    def set_primary(self, name: str, item_id: str) -> Keyset:
        return self.replace(self._stored(name).with_primary(item_id))

    def distrust(self, name: str, item_id: str) -> Keyset:
        return self.replace(self._stored(name).with_distrusted(item_id))

    def _stored(self, name: str) -> Keyset:
        keyset = self._read(name)
        if keyset is None:
            raise NotFoundError(f"keyset {name} not found for cluster {self.cluster} in {self.store.url}")
        return keyset

    @staticmethod
    def _check(keyset: Keyset) -> None:
        """kops' ``StoreKeyset`` rules: a primary that exists, is trusted, and has key and certificate."""
        ids = [it.id for it in keyset.items]
        if len(set(ids)) != len(ids):
            raise PykopsError(f"keyset {keyset.name} has duplicate item ids")
        primary = next((it for it in keyset.items if it.id == keyset.primary_id), None)
        if primary is None:
            raise PykopsError(
                f"keyset {keyset.name}: primary id {keyset.primary_id!r} is not one of its items"
            )
        if not primary.trusted:
            raise PykopsError(f"keyset {keyset.name}: the primary {primary.id} must not be distrusted")
        if not primary.has_private_key:
            raise PykopsError(f"keyset {keyset.name}: the primary {primary.id} must have a private key")
