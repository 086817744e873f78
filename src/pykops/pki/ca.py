"""Certificate authorities and certificates, made the way kops makes them (pure: no I/O).

kops facts kept here (``pkg/pki/issue.go``, ``pkg/pki/csr.go``, ``pkg/pki/privatekey.go``,
``upup/pkg/fi/fitasks/keypair.go``):

* keys are RSA 2048 written as PKCS#1 PEM (``-----BEGIN RSA PRIVATE KEY-----``);
* a CA is self-signed with subject ``CN=<keyset name>``, basic constraints ``CA:TRUE`` and key usage
  ``keyCertSign, cRLSign``, valid for 10 years;
* issued certificates have ``CA:FALSE`` and, by type, ``client`` = clientAuth + digitalSignature,
  ``server`` = serverAuth + digitalSignature + keyEncipherment, ``clientServer`` = both ("both" here);
* ``NotBefore`` is backdated 48 hours (clock skew between machines);
* serial numbers are ``(unix nanoseconds << 32) | 32 random bits`` (``BuildPKISerial``), so a later
  certificate has a larger serial, and the serial in decimal is the keyset item's id.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pykops.errors import PykopsError

Usage = Literal["server", "client", "both"]

KEY_SIZE = 2048
CA_VALIDITY = timedelta(days=10 * 365)  # kops: 10 years when no validity is given
DEFAULT_VALIDITY = timedelta(days=365)
BACKDATE = timedelta(hours=48)  # kops backdates NotBefore 48h
SERVICE_ACCOUNT = "service-account"


class PKIError(PykopsError):
    """A certificate or key that cannot be parsed or used."""


@dataclass(frozen=True, repr=False)
class Keypair:
    """A certificate and its private key, PEM-encoded; ``id`` is the serial number in decimal.

    The private key never appears in ``repr``.
    """

    cert_pem: bytes
    key_pem: bytes
    id: str

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert_pem)

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return load_private_key(self.key_pem)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    def __repr__(self) -> str:
        return f"Keypair(id={self.id!r}, subject={self.subject!r})"


# --- building blocks -------------------------------------------------------------------------------------


def new_serial(now_ns: int | None = None) -> int:
    """kops' ``BuildPKISerial``: the time in nanoseconds shifted left 32 bits, OR 32 random bits."""
    ns = time.time_ns() if now_ns is None else now_ns
    return (ns << 32) | secrets.randbits(32)


def generate_private_key(key_size: int = KEY_SIZE) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#1 PEM (``RSA PRIVATE KEY``), the encoding kops writes and reads."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_pem(cert_pem: bytes) -> bytes:
    """The certificate's public key as a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo)."""
    return (
        load_certificate(cert_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise PKIError(f"not a PEM certificate: {exc}") from None


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        # The message of cryptography never contains key material.
        raise PKIError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PKIError(f"unsupported private key type {type(key).__name__}; kops keysets hold RSA keys")
    return key


def load_keypair(cert_pem: bytes, key_pem: bytes) -> Keypair:
    """A Keypair from PEM data, checking that the key belongs to the certificate."""
    cert = load_certificate(cert_pem)
    key = load_private_key(key_pem)
    public = cert.public_key()
    if (
        not isinstance(public, rsa.RSAPublicKey)
        or public.public_numbers() != key.public_key().public_numbers()
    ):
        raise PKIError(f"the private key does not match the certificate {cert.subject.rfc4514_string()}")
    return Keypair(cert_pem=cert_pem, key_pem=key_pem, id=str(cert.serial_number))


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _name(common_name: str, organization: Sequence[str] = ()) -> x509.Name:
    if not common_name:
        raise PKIError("a certificate needs a common name")
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organization]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


# --- CAs and certificates -------------------------------------------------------------------------------


def new_ca(
    name: str,
    *,
    validity: timedelta = CA_VALIDITY,
    key_size: int = KEY_SIZE,
    now: datetime | None = None,
) -> Keypair:
    """A self-signed CA ``CN=<name>`` (kops' keypair type ``ca``)."""
    start = _now(now)
    key = generate_private_key(key_size)
    subject = _name(name)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(new_serial())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    cert = builder.sign(key, hashes.SHA256())
    return Keypair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_key_pem(key),
        id=str(cert.serial_number),
    )


def new_service_account_key(name: str = SERVICE_ACCOUNT, *, key_size: int = KEY_SIZE) -> Keypair:
    """The service-account signing key, as kops makes it: an RSA key with a self-signed ``CN=<name>``
    certificate (kops creates keyset ``service-account`` as type ``ca``; only the key signs tokens, the
    certificate carries the public key, which every keyset item must have)."""
    return new_ca(name, key_size=key_size)


def issue(
    ca: Keypair,
    *,
    common_name: str,
    organization: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    usage: Usage = "server",
    validity: timedelta = DEFAULT_VALIDITY,
    key_size: int = KEY_SIZE,
    now: datetime | None = None,
) -> Keypair:
    """A new key and a certificate for it signed by ``ca``.

    ``usage``: ``server`` (serverAuth), ``client`` (clientAuth) or ``both``. The certificate never outlives
    the CA: ``NotAfter`` is capped at the CA's.
    """
    if usage not in ("server", "client", "both"):
        raise PKIError(f"unknown certificate usage {usage!r}; expected server, client or both")
    if validity <= timedelta(0):
        raise PKIError(f"certificate validity must be positive, got {validity}")
    ca_cert = ca.certificate
    ca_key = ca.private_key
    basic = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not basic.ca:
        raise PKIError(f"{ca_cert.subject.rfc4514_string()} is not a CA; it cannot sign certificates")

    start = _now(now)
    not_after = min(start + validity, ca_cert.not_valid_after_utc)
    key = generate_private_key(key_size)
    public = key.public_key()

    server = usage in ("server", "both")
    client = usage in ("client", "both")
    ext_usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
        [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(new_serial())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=server,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ext_usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans = _subject_alt_names(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Keypair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_key_pem(key),
        id=str(cert.serial_number),
    )


def _subject_alt_names(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for dns in dns_names:
        dns = dns.strip()
        if dns and x509.DNSName(dns) not in names:
            names.append(x509.DNSName(dns))
    for ip in ip_addresses:
        try:
            address = x509.IPAddress(ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise PKIError(f"not an IP address: {ip!r}") from None
        if address not in names:
            names.append(address)
    return names


def verify_signed_by(cert_pem: bytes, ca_cert_pem: bytes) -> bool:
    """Whether ``cert_pem`` was issued by (is signed by the key of) the CA ``ca_cert_pem``."""
    cert = load_certificate(cert_pem)
    ca_cert = load_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
