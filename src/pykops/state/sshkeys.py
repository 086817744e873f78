"""SSH public keys of a cluster, stored as kops does: ``<cluster>/pki/ssh/public/admin/<fingerprint>``."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from pykops.errors import UsageError
from pykops.state.store import StateStore

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


@dataclass(frozen=True)
class PublicKey:
    text: str
    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        """The MD5 fingerprint (hex, no colons): the name kops gives the stored key and the AWS key pair."""
        return hashlib.md5(self.blob, usedforsecurity=False).hexdigest()


def parse_public_key(text: str, source: str) -> PublicKey:
    """Parse an OpenSSH public key line; a private key or anything else is refused with a clear line."""
    line = text.strip()
    if "PRIVATE KEY" in line:
        raise UsageError(
            f"{source}: this is a private key; give the public key (.pub), e.g. ssh-keygen -y -f KEY"
        )
    parts = line.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise UsageError(
            f"{source}: not an SSH public key; expected a line starting with {' or '.join(KEY_TYPES[:2])}"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{source}: the SSH public key is corrupt (bad base64)") from None
    return PublicKey(text=" ".join(parts[:3]) + "\n", key_type=parts[0], blob=blob)


def public_key_key(cluster: str, key: PublicKey) -> str:
    return f"{cluster}/pki/ssh/public/admin/{key.fingerprint}"


def store_public_key(store: StateStore, cluster: str, key: PublicKey) -> None:
    store.put(public_key_key(cluster, key), key.text.encode())
