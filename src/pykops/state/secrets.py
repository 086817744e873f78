"""Cluster secrets in the state store, as kops keeps them (``upup/pkg/fi/secrets/vfs_secretstore.go``).

``<cluster>/secrets/<name>`` holds the JSON of kops' ``fi.Secret`` — ``{"Data": "<base64>"}`` (Go encodes a
``[]byte`` field as base64). kops' well-known names are ``dockerconfig`` (a Docker ``config.json`` with
``auths``, for pulling from private registries) and ``encryptionconfig`` (the API server's
``EncryptionConfiguration``). Secrets are written with ``secret=True`` (0600 in a ``file://`` store, SSE on
S3); creating one that exists is refused unless forced, as ``kops create secret ... --force``.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
from typing import Any

import yaml

from pykops.errors import ConflictError, NotFoundError, StateStoreError, UsageError
from pykops.state.store import StateStore

SECRETS_DIR = "secrets"
DOCKERCONFIG = "dockerconfig"
ENCRYPTIONCONFIG = "encryptionconfig"
ENCRYPTION_CONFIG_KIND = "EncryptionConfiguration"
ENCRYPTION_CONFIG_API_VERSIONS = ("apiserver.config.k8s.io/v1",)


def encode_secret(data: bytes) -> bytes:
    """kops' on-store form of a secret: ``{"Data":"<base64>"}``."""
    return json.dumps({"Data": base64.b64encode(data).decode()}, separators=(",", ":")).encode()


def decode_secret(raw: bytes, source: str) -> bytes:
    try:
        doc = json.loads(raw)
        return base64.b64decode(doc.get("Data") or "", validate=True) if isinstance(doc, dict) else b""
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise StateStoreError(f"{source}: not a kops secret (expected JSON with base64 Data)") from None


def validate_dockerconfig(data: bytes, source: str) -> None:
    """A Docker ``config.json``: a JSON object with an ``auths`` object (registry → credentials)."""
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths"), dict):
        raise UsageError(
            f'{source}: not a Docker config: expected a JSON object with "auths", e.g. '
            '{"auths": {"registry.example.com": {"auth": "<base64 user:password>"}}}'
        )
    for registry, entry in doc["auths"].items():
        if not isinstance(entry, dict):
            raise UsageError(
                f"{source}: auths.{registry} must be an object (with auth, or username/password)"
            )


def validate_encryptionconfig(data: bytes, source: str) -> None:
    """The API server's ``EncryptionConfiguration`` YAML (kind, apiVersion and a list of resources)."""
    try:
        doc: Any = yaml.safe_load(data.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != ENCRYPTION_CONFIG_KIND:
        raise UsageError(f"{source}: not an encryption config: expected kind: {ENCRYPTION_CONFIG_KIND}")
    if doc.get("apiVersion") not in ENCRYPTION_CONFIG_API_VERSIONS:
        raise UsageError(
            f"{source}: apiVersion {doc.get('apiVersion')!r} is not "
            f"{' or '.join(ENCRYPTION_CONFIG_API_VERSIONS)}"
        )
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        raise UsageError(f"{source}: resources must be a non-empty list (of resources and providers)")
    for n, res in enumerate(resources):
        if not isinstance(res, dict) or not res.get("resources") or not res.get("providers"):
            raise UsageError(f"{source}: resources[{n}] needs resources and providers")


VALIDATORS = {DOCKERCONFIG: validate_dockerconfig, ENCRYPTIONCONFIG: validate_encryptionconfig}


class SecretStore:
    """The secrets of one cluster; see the module docstring."""

    def __init__(self, store: StateStore, cluster: str) -> None:
        self.store = store
        self.cluster = cluster

    def key(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"invalid secret name {name!r}")
        return f"{self.cluster}/{SECRETS_DIR}/{name}"

    def list(self) -> builtins.list[str]:
        prefix = f"{self.cluster}/{SECRETS_DIR}/"
        return sorted(k[len(prefix) :] for k in self.store.list(prefix) if "/" not in k[len(prefix) :])

    def get(self, name: str) -> bytes | None:
        key = self.key(name)
        found = self.store.read(key)
        return None if found is None else decode_secret(found.data, f"{self.store.url}/{key}")

    def create(self, name: str, data: bytes, *, force: bool = False) -> None:
        """Store a secret; an existing one is replaced only with ``force``."""
        key = self.key(name)
        if force:
            self.store.put(key, encode_secret(data), secret=True)
            return
        try:
            self.store.create(key, encode_secret(data), secret=True)
        except ConflictError:
            raise ConflictError(
                f"the {name} secret of cluster {self.cluster} already exists; pass --force to replace it"
            ) from None

    def delete(self, name: str) -> None:
        key = self.key(name)
        if self.store.read(key) is None:
            raise NotFoundError(
                f"secret {name!r} not found in cluster {self.cluster} "
                f"(secrets: {', '.join(self.list()) or 'none'})"
            )
        self.store.delete(key)
