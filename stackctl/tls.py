"""The stack's own certificate authority, for TLS_MODE=local (and as the certificate the
edge serves in acme mode until the ACME CA has issued one).

`make up` makes, once, beside the other secrets of the stack:
- local_ca.crt: the CA's certificate, which browsers and clients are told to trust
  (`curl --cacert`, an NSS database, a system store); local_ca.key never leaves this host;
- tls_certificate + tls_key: what the edge serves, for SERVER_NAMES plus localhost, 127.0.0.1
  and the published address. Every `make up` issues a new one when the names changed, the
  CA changed, or it expires within RENEW_BEFORE_DAYS; the CA itself is kept;
- local_ca.crl: the CA's revocation list (empty: nothing is revoked), which the edge serves on
  its plain listener at CRL_PATH and the certificate names, so clients that check revocation
  can; made again before it runs out.

Keys are ECDSA P-256, made by the openssl command line (Debian's openssl package).
"""

from __future__ import annotations

import calendar
import ipaddress
import os
import shutil
import tempfile
import time
from pathlib import Path

from stackctl import docker
from stackctl.console import StackError, say

CA_CERT = "local_ca.crt"
CA_KEY = "local_ca.key"
SERVER_CERT = "tls_certificate"
SERVER_KEY = "tls_key"
CA_CRL = "local_ca.crl"
CRL_PATH = "/.edge/local-ca.crl"
CA_DAYS = 3650
# Browsers refuse server certificates valid for more than 398 days.
SERVER_DAYS = 397
RENEW_BEFORE_DAYS = 30
ALWAYS_NAMES = ("localhost", "127.0.0.1")
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl_run(*args, check: bool = True):
    if not shutil.which("openssl"):
        raise StackError("the openssl command is missing: apt-get install openssl")
    return docker.run(["openssl", *args], check=check)


def _openssl(*args) -> str:
    return _openssl_run(*args).stdout


def _openssl_says_yes(*args) -> bool:
    """For openssl's checks (verify, -checkend): their answer is the exit code."""
    return _openssl_run(*args, check=False).returncode == 0


def _san(names) -> str:
    """subjectAltName value: IP: for addresses, DNS: for names."""
    entries = []
    for name in names:
        try:
            entries.append(f"IP:{ipaddress.ip_address(name)}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


CN_MAX = 64


def make_ca(cert: Path, key: Path, common_name: str) -> None:
    """A self-signed CA that may sign server certificates only (no intermediate CAs)."""
    _openssl("req", "-x509", *EC_KEY, "-keyout", key, "-out", cert, "-days", CA_DAYS,
             # X.509 caps a common name at 64 characters (a long project name would pass it).
             "-subj", f"/CN={common_name[:CN_MAX]}",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key.chmod(0o600)
    cert.chmod(0o644)


def make_crl(ca_cert: Path, ca_key: Path, crl: Path, days: int = SERVER_DAYS) -> None:
    """An empty revocation list signed by the CA (openssl ca wants its bookkeeping files)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "index.txt").write_text("")
        (Path(tmp) / "crlnumber").write_text(f"{int.from_bytes(os.urandom(8), 'big'):016X}\n")
        config = Path(tmp) / "ca.cnf"
        config.write_text(f"[ca]\ndefault_ca = local\n[local]\ndatabase = {tmp}/index.txt\n"
                          f"crlnumber = {tmp}/crlnumber\ndefault_md = sha256\n")
        _openssl("ca", "-gencrl", "-config", config, "-cert", ca_cert, "-keyfile", ca_key, "-crldays", days,
                 "-out", crl)
    crl.chmod(0o644)


def issue(ca_cert: Path, ca_key: Path, cert: Path, key: Path, names, days: int = SERVER_DAYS,
          crl_url: str | None = None) -> None:
    """A server certificate for NAMES (the first is its CN), signed by the CA, naming CRL_URL
    as where its revocation list is. The key is readable by the container user that serves it
    (the secrets directory is the host's guard)."""
    names = list(dict.fromkeys(names))
    with tempfile.TemporaryDirectory() as tmp:
        csr, extensions = Path(tmp) / "server.csr", Path(tmp) / "server.ext"
        extensions.write_text(
            f"subjectAltName={_san(names)}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
            + (f"crlDistributionPoints=URI:{crl_url}\n" if crl_url else ""))
        _openssl("req", "-new", *EC_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
        _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-set_serial",
                 str(int.from_bytes(os.urandom(16), "big")), "-days", days,
                 "-extfile", extensions, "-out", cert)
    key.chmod(0o644)
    cert.chmod(0o644)


def certificate_names(cert: Path) -> set[str]:
    out = _openssl("x509", "-in", cert, "-noout", "-ext", "subjectAltName")
    return {entry.split(":", 1)[1].strip() for line in out.splitlines()[1:]
            for entry in line.split(",") if ":" in entry}


def crl_url(cert: Path) -> str | None:
    out = _openssl("x509", "-in", cert, "-noout", "-ext", "crlDistributionPoints")
    urls = [line.strip().removeprefix("URI:") for line in out.splitlines() if "URI:" in line]
    return urls[0] if urls else None


def _crl_due(crl: Path) -> bool:
    if not crl.exists():
        return True
    # -checkend works on certificates only: compare nextUpdate ourselves
    next_update = _openssl("crl", "-in", crl, "-noout", "-nextupdate").split("=", 1)[1].strip()
    seconds = _openssl_date_seconds(next_update)
    return seconds - time.time() < RENEW_BEFORE_DAYS * 86400


def _openssl_date_seconds(text: str) -> float:
    """'Jan  2 03:04:05 2027 GMT' (openssl's date format) -> epoch seconds."""
    return calendar.timegm(time.strptime(" ".join(text.split()), "%b %d %H:%M:%S %Y GMT"))


def _still_good(ca_cert: Path, cert: Path, names, crl_location: str) -> str | None:
    """Why the server certificate must be issued again, or None."""
    if not cert.exists():
        return "none yet"
    if not _openssl_says_yes("verify", "-CAfile", ca_cert, cert):
        return "not signed by the current local CA"
    if not _openssl_says_yes("x509", "-in", cert, "-noout", "-checkend", RENEW_BEFORE_DAYS * 86400):
        return f"expires within {RENEW_BEFORE_DAYS} days"
    if certificate_names(cert) != set(names):
        return "the names changed"
    if crl_url(cert) != crl_location:
        return "the revocation list moved"
    return None


def ensure_local_certificates(secrets_dir: Path, project: str, names, http_port: int) -> None:
    """The local CA (made once), its revocation list and a current server certificate for
    NAMES, whose revocation list is on the edge's plain listener (HTTP_PORT) at the first name."""
    ca_cert, ca_key, crl = secrets_dir / CA_CERT, secrets_dir / CA_KEY, secrets_dir / CA_CRL
    if not (ca_cert.exists() and ca_key.exists()):
        make_ca(ca_cert, ca_key, f"Dam inventory local CA ({project})")
        crl.unlink(missing_ok=True)
        say(f"made a local certificate authority: {ca_cert} (trust it in browsers: README, 'HTTPS')")
    if _crl_due(crl):
        make_crl(ca_cert, ca_key, crl)
    names = [*dict.fromkeys([*names, *ALWAYS_NAMES])]
    port = "" if http_port == 80 else f":{http_port}"
    location = f"http://{names[0]}{port}{CRL_PATH}"
    reason = _still_good(ca_cert, secrets_dir / SERVER_CERT, names, location)
    if reason:
        issue(ca_cert, ca_key, secrets_dir / SERVER_CERT, secrets_dir / SERVER_KEY, names, crl_url=location)
        say(f"issued the edge's certificate for {', '.join(names)} ({reason}; valid {SERVER_DAYS} days)")
