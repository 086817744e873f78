"""pki.ca: CAs and certificates made as kops makes them, checked with openssl and with cryptography."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pykops.pki.ca import (
    BACKDATE,
    CA_VALIDITY,
    Keypair,
    PKIError,
    issue,
    load_keypair,
    new_ca,
    new_serial,
    new_service_account_key,
    public_key_pem,
    verify_signed_by,
)

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


@pytest.fixture(scope="module")
def ca() -> Keypair:
    return new_ca("kubernetes-ca")


@pytest.fixture(scope="module")
def other_ca() -> Keypair:
    return new_ca("someone-else-ca")


def _openssl_verify(
    tmp_path: Path, ca: Keypair, leaf: Keypair, purpose: str | None = None
) -> tuple[int, str]:
    assert OPENSSL is not None
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    args = [OPENSSL, "verify", "-CAfile", str(tmp_path / "ca.pem")]
    if purpose:
        args += ["-purpose", purpose]
    done = subprocess.run([*args, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


# --- CAs --------------------------------------------------------------------------------------------------


def test_ca_is_a_self_signed_kops_ca(ca: Keypair) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-ca"
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical and isinstance(basic.value, x509.BasicConstraints) and basic.value.ca
    usage = _ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert verify_signed_by(ca.cert_pem, ca.cert_pem)
    # kops: RSA 2048, PKCS#1 PEM, id = serial in decimal, valid 10 years, NotBefore backdated 48h
    assert ca.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert isinstance(ca.private_key, rsa.RSAPrivateKey) and ca.private_key.key_size == 2048
    assert ca.id == str(cert.serial_number)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - (CA_VALIDITY + BACKDATE)) < timedelta(seconds=5)


@needs_openssl
def test_openssl_accepts_the_ca(tmp_path: Path, ca: Keypair) -> None:
    code, out = _openssl_verify(tmp_path, ca, ca)
    assert code == 0, out


def test_serials_grow_with_time_like_kops() -> None:
    first = new_serial()
    second = new_serial()
    assert second > first
    assert new_serial(now_ns=1) >> 32 == 1
    a, b = new_ca("a"), new_ca("b")
    assert int(b.id) > int(a.id)


def test_service_account_key_is_kops_shaped() -> None:
    key = new_service_account_key()
    assert key.certificate.subject.rfc4514_string() == "CN=service-account"
    assert b"PUBLIC KEY" in public_key_pem(key.cert_pem)
    assert key.private_key.key_size == 2048


def test_keypair_repr_hides_the_private_key(ca: Keypair) -> None:
    text = repr(ca) + str(ca)
    assert "PRIVATE" not in text and ca.key_pem.decode()[40:80] not in text
    assert ca.id in text


# --- issued certificates ----------------------------------------------------------------------------------


def test_server_certificate_chain_sans_usage_and_expiry(ca: Keypair) -> None:
    before = datetime.now(UTC)
    leaf = issue(
        ca,
        common_name="kubernetes-master",
        dns_names=[
            "api.internal.proyecto.k8s.local",
            "kubernetes.default",
            "api.internal.proyecto.k8s.local",
        ],
        ip_addresses=["100.64.0.1", "127.0.0.1", "::1"],
        usage="server",
        validity=timedelta(days=30),
    )
    cert = leaf.certificate
    assert verify_signed_by(leaf.cert_pem, ca.cert_pem)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.issuer == ca.certificate.subject
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["api.internal.proyecto.k8s.local", "kubernetes.default"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("100.64.0.1"),
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    basic = _ext(cert, x509.BasicConstraints).value
    assert isinstance(basic, x509.BasicConstraints) and not basic.ca
    usage = _ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    ski = _ext(ca.certificate, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier) and isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest
    after = datetime.now(UTC)
    assert before + timedelta(days=30) - timedelta(seconds=1) <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc <= after + timedelta(days=30)
    assert cert.not_valid_before_utc <= before - BACKDATE + timedelta(seconds=1)
    assert leaf.id == str(cert.serial_number)


def test_client_certificate_has_organization_and_client_auth(ca: Keypair) -> None:
    leaf = issue(ca, common_name="kubecfg-alice", organization=["system:masters"], usage="client")
    cert = leaf.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubecfg-alice"
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = _ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage) and usage.digital_signature and not usage.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


def test_both_usages(ca: Keypair) -> None:
    cert = issue(ca, common_name="etcd", usage="both", dns_names=["etcd-a.internal"]).certificate
    assert set(_ext(cert, x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    }


@needs_openssl
@pytest.mark.parametrize(
    ("usage", "purpose", "ok"),
    [
        ("server", "sslserver", True),
        ("server", "sslclient", False),
        ("client", "sslclient", True),
        ("client", "sslserver", False),
        ("both", "sslserver", True),
        ("both", "sslclient", True),
    ],
)
def test_openssl_verifies_chain_and_purpose(
    tmp_path: Path, ca: Keypair, usage: str, purpose: str, ok: bool
) -> None:
    leaf = issue(ca, common_name="x", usage=usage, dns_names=["x.example"])
    code, out = _openssl_verify(tmp_path, ca, leaf, purpose)
    assert (code == 0) == ok, out


@needs_openssl
def test_openssl_refuses_a_certificate_of_another_ca(tmp_path: Path, ca: Keypair, other_ca: Keypair) -> None:
    leaf = issue(other_ca, common_name="intruder")
    code, out = _openssl_verify(tmp_path, ca, leaf)
    assert code != 0, out
    assert not verify_signed_by(leaf.cert_pem, ca.cert_pem)


def test_issued_certificate_never_outlives_its_ca() -> None:
    short_ca = new_ca("short", validity=timedelta(days=2))
    leaf = issue(short_ca, common_name="x", validity=timedelta(days=365))
    assert leaf.certificate.not_valid_after_utc == short_ca.certificate.not_valid_after_utc


def test_issue_refuses_bad_input(ca: Keypair) -> None:
    leaf = issue(ca, common_name="leaf")
    with pytest.raises(PKIError, match="not a CA"):
        issue(leaf, common_name="x")
    with pytest.raises(PKIError, match="not an IP address"):
        issue(ca, common_name="x", ip_addresses=["10.0.0.300"])
    with pytest.raises(PKIError, match="usage"):
        issue(ca, common_name="x", usage="peer")
    with pytest.raises(PKIError, match="positive"):
        issue(ca, common_name="x", validity=timedelta(0))
    with pytest.raises(PKIError, match="common name"):
        issue(ca, common_name="")


def test_load_keypair_checks_the_pair(ca: Keypair, other_ca: Keypair) -> None:
    loaded = load_keypair(ca.cert_pem, ca.key_pem)
    assert loaded == ca
    with pytest.raises(PKIError, match="does not match"):
        load_keypair(ca.cert_pem, other_ca.key_pem)
    with pytest.raises(PKIError, match="not a PEM certificate"):
        load_keypair(b"garbage", ca.key_pem)
    with pytest.raises(PKIError, match="private key") as err:
        load_keypair(ca.cert_pem, b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    assert "AAAA" not in str(err.value)
