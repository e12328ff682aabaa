"""Key material of the sandbox: the self-signed TLS certificate, the token-signing key, certificate thumbprints.

Everything is generated with ``cryptography``; nothing here touches the network or the state directory layout.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "b64url",
    "generate_rsa_key_pem",
    "generate_tls_certificate",
    "key_id",
    "thumbprints",
]


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE headers use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rsa_signing_jwk(public_key: rsa.RSAPublicKey, kid: str, issuer: str) -> dict[str, str]:
    """The public half of an RS256 signing key as a JWK (for a JWKS document)."""
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        "issuer": issuer,
    }


def generate_rsa_key_pem(bits: int = 2048) -> bytes:
    """A fresh RSA private key as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_tls_certificate(common_name: str = "mediabot sandbox") -> tuple[bytes, bytes]:
    """A self-signed certificate (SAN ``IP:127.0.0.1``, ``DNS:localhost``) and its key, both PEM.

    The certificate is its own CA (``cA=TRUE``) so clients can pass it as their trust bundle.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def thumbprints(certificate_pem: str) -> tuple[str, str]:
    """The certificate's SHA-1 and SHA-256 thumbprints, base64url (the JOSE ``x5t`` / ``x5t#S256`` values)."""
    der = x509.load_pem_x509_certificate(certificate_pem.encode("ascii")).public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der, usedforsecurity=False).digest()), b64url(hashlib.sha256(der).digest())


def key_id(private_key_pem: bytes) -> str:
    """A stable ``kid`` for a signing key: base64url of the SHA-256 of its public key (first 16 bytes)."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url(hashlib.sha256(public_der).digest()[:16])
