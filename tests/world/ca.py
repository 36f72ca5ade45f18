"""A throw-away X.509 certificate authority for the test world.

Keys are EC P-256 (fast to generate). Every file lives under the directory
given to :class:`TestCA`. An "untrusted" certificate is simply one issued by a
second ``TestCA`` instance whose root nobody trusts.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TestCA:
    """A root CA that issues leaf certificates for TLS servers."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.directory = directory / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 365 * _ONE_DAY)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = self.directory / "ca.pem"
        self.ca_file.write_bytes(_pem(self._cert))
        self._issued: dict[tuple[tuple[str, ...], bool, bool], tuple[Path, Path]] = {}

    def issue(
        self, names: list[str], *, expired: bool = False, cn_only: bool = False
    ) -> tuple[Path, Path]:
        """Issue a server certificate; return ``(chain_pem, key_pem)`` paths.

        The chain file holds the leaf followed by this CA's root. With
        ``cn_only`` the first name goes into the subject CN and there is no
        subjectAltName; otherwise all names are SAN dNSNames. With ``expired``
        the certificate's notAfter lies in the past. Results are cached.
        """
        if not names:
            raise ValueError("a certificate needs at least one name")
        cache_key = (tuple(names), expired, cn_only)
        cached = self._issued.get(cache_key)
        if cached is not None:
            return cached

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            not_before, not_after = now - 30 * _ONE_DAY, now - _ONE_DAY
        else:
            not_before, not_after = now - _ONE_DAY, now + 30 * _ONE_DAY
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if not cn_only:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        cert = builder.sign(self._key, hashes.SHA256())

        stem = f"leaf{len(self._issued)}"
        chain_path = self.directory / f"{stem}.pem"
        key_path = self.directory / f"{stem}.key"
        chain_path.write_bytes(_pem(cert) + _pem(self._cert))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        self._issued[cache_key] = (chain_path, key_path)
        return chain_path, key_path
