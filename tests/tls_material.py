"""Throwaway certificate authorities and certificates for TLS tests (written as PEM files)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Material:
    ca: Path  # the authority that signed the servers' certificates
    server: Pair  # localhost and 127.0.0.1
    other_server: Pair  # "other.test": what a server shows a client that sends no SNI
    client_ca: Path  # the authority servers check client certificates against
    client: Pair
    client_combined: Path  # the client's certificate and key in one file
    stranger: Pair  # a client certificate no server trusts


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Pair:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pair(cert_path, key_path)


def _authority(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    common: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()), False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(issuer[0], hashes.SHA256())


def make_material(folder: Path) -> Material:
    folder.mkdir(parents=True, exist_ok=True)
    server_ca, client_ca = _authority("Test Server CA"), _authority("Test Client CA")
    (folder / "ca.pem").write_bytes(server_ca[1].public_bytes(serialization.Encoding.PEM))
    (folder / "client-ca.pem").write_bytes(client_ca[1].public_bytes(serialization.Encoding.PEM))
    local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _write(
        folder / "server", *_leaf("localhost", server_ca, local, ExtendedKeyUsageOID.SERVER_AUTH)
    )
    other = _write(
        folder / "other",
        *_leaf(
            "other.test", server_ca, [x509.DNSName("other.test")], ExtendedKeyUsageOID.SERVER_AUTH
        ),
    )
    client = _write(
        folder / "client", *_leaf("gateway-client", client_ca, [], ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    combined = folder / "client-combined.pem"
    combined.write_bytes(client.cert.read_bytes() + client.key.read_bytes())
    stranger_ca = _authority("Stranger CA")
    stranger = _write(
        folder / "stranger", *_leaf("stranger", stranger_ca, [], ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    return Material(
        folder / "ca.pem", server, other, folder / "client-ca.pem", client, combined, stranger
    )
