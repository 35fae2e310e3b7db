"""TLS settings for upstream connections, and the SSL contexts made from them.

Verification is on unless a deployment turns it off. The CAs trusted are, in order: the
deployment's own bundle (`litellm_params.ssl_verify: /path/ca.pem`, LiteLLM's key, a file or a
directory), else `SSL_CERT_FILE`, else `SSL_CERT_DIR` (as httpx reads them), else the system's.
A client certificate (`ssl_certificate`, LiteLLM's key: a PEM file holding the certificate and,
unless `ssl_certificate_key` names another file, its key) answers servers that ask for one.
The server name is always sent (SNI) and checked against the certificate.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TLSOptions:
    # True: verify against the default CAs; a path: against that bundle; False: no check.
    verify: bool | str = True
    certificate: str | None = None
    certificate_key: str | None = None


DEFAULT_TLS = TLSOptions()


class TLSSetupError(ValueError):
    """The files TLS options name cannot be read as CAs or a certificate with its key."""


def create_context(options: TLSOptions) -> ssl.SSLContext:
    """An SSL context for these options, CA files read from disk (once per options: the
    client caches it)."""
    try:
        if options.verify is False:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif isinstance(options.verify, str):
            if os.path.isdir(options.verify):
                context = ssl.create_default_context(capath=options.verify)
            else:
                context = ssl.create_default_context(cafile=options.verify)
        elif cafile := os.environ.get("SSL_CERT_FILE"):
            context = ssl.create_default_context(cafile=cafile)
        elif capath := os.environ.get("SSL_CERT_DIR"):
            context = ssl.create_default_context(capath=capath)
        else:
            context = ssl.create_default_context()
        if options.certificate is not None:
            context.load_cert_chain(options.certificate, options.certificate_key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(f"cannot set up TLS ({_describe(options)}): {exc}") from None
    return context


def _describe(options: TLSOptions) -> str:
    parts = []
    if isinstance(options.verify, str):
        parts.append(f"ssl_verify={options.verify}")
    elif options.verify:
        cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        parts.append(
            f"SSL_CERT_FILE={cafile}"
            if cafile
            else f"SSL_CERT_DIR={capath}"
            if capath
            else "system CAs"
        )
    if options.certificate:
        parts.append(f"ssl_certificate={options.certificate}")
    if options.certificate_key:
        parts.append(f"ssl_certificate_key={options.certificate_key}")
    return ", ".join(parts) or "verification off"
