"""A Docker Registry token server for tests: the realm of distribution's `auth: token:`.

`GET /token?service=S&scope=repository:NAME:ACTIONS` with HTTP basic credentials answers
`{"token", "access_token", "expires_in", "issued_at"}`: a JWT signed ES256 by a self-signed
P-256 certificate that rides in the header's `x5c`, so the registry verifies it against
`rootcertbundle` (that same certificate, `TokenSigner.write_bundle`). Claims are the ones
distribution's token verifier reads: iss, sub, aud (= service), exp, nbf, iat, jti, access.

Policy (the spec leaves it to the server): a known user with the right password gets the
pull/push it asked for on every repository; an anonymous request gets a token granting
nothing (the registry then refuses it); wrong credentials get 401. Tests run it on a
thread on loopback (`TokenServer`); the lab runs `python -m shoal.lab.tokenauth` inside its
registry namespace (`main`), which writes the bundle once it listens."""

from __future__ import annotations

import argparse
import base64
import datetime
import hmac
import json
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

__all__ = ["GRANTABLE", "TokenServer", "TokenSigner", "grant", "main", "parse_scope"]

TOKEN_TTL = 300
GRANTABLE = ("pull", "push")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`repository:private/app:pull,push` → (type, name, actions); None when malformed.

    The name may hold a `:` (a registry port), so type and actions are split off the ends."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


@dataclass(frozen=True)
class TokenSigner:
    """Signs registry tokens for `issuer` with `key`, whose certificate is `cert`."""

    issuer: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, issuer: str) -> TokenSigner:
        """A fresh P-256 key and a self-signed CA certificate for it, valid for a day."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(issuer, key, cert)

    def write_bundle(self, path: Path) -> Path:
        """The registry's `rootcertbundle`: the signing certificate, PEM."""
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def sign(self, subject: str, service: str, access: list[dict[str, Any]], now: int) -> str:
        """A compact JWS (ES256: the raw r||s signature, not DER) over the claims."""
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": self.issuer, "sub": subject, "aud": service,
            "exp": now + TOKEN_TTL, "nbf": now - 1, "iat": now,
            "jti": secrets.token_hex(16), "access": access,
        }  # fmt: skip
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def grant(scopes: list[str], known_user: bool) -> list[dict[str, Any]]:
    """The `access` claim: what was asked for among what the policy allows."""
    access: list[dict[str, Any]] = []
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is None or parsed[0] != "repository" or not known_user:
            continue
        kind, name, actions = parsed
        allowed = [a for a in actions if a in GRANTABLE] if "*" not in actions else list(GRANTABLE)
        if allowed:
            access.append({"type": kind, "name": name, "actions": allowed})
    return access


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/token":
            return self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        query = parse_qs(url.query)
        service = query.get("service", [""])[0]
        user = self._authenticate()
        if user is None:
            self.server.refused += 1
            return self._reply(
                401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            )
        now = int(time.time())
        access = grant(query.get("scope", []), bool(user))
        token = self.server.signer.sign(user, service, access, now)
        self.server.issued.append((user, access))
        if self.server.echo:
            print(f"issued {user or '(anonymous)'} {json.dumps(access)}", flush=True)
        issued_at = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat()
        self._reply(
            200,
            {"token": token, "access_token": token, "expires_in": TOKEN_TTL,
             "issued_at": issued_at.replace("+00:00", "Z")},
        )  # fmt: skip

    def _authenticate(self) -> str | None:
        """The user name for good credentials, "" when anonymous, None when refused."""
        header = self.headers.get("Authorization", "")
        if not header:
            return ""
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self.server.users.get(user)
        if scheme.lower() != "basic" or expected is None:
            return None
        return user if hmac.compare_digest(expected.encode(), password.encode()) else None

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="shoal-token"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], signer: TokenSigner, users: dict[str, str]) -> None:
        super().__init__(addr, _Handler)
        self.signer = signer
        self.users = users
        self.issued: list[tuple[str, list[dict[str, Any]]]] = []
        self.refused = 0
        self.echo = False  # print a line per token (the lab's process, into its log)


class TokenServer:
    """The token server on a thread; `realm` is its token URL. Use as a context manager."""

    def __init__(self, signer: TokenSigner, users: dict[str, str], host: str = "127.0.0.1",
                 port: int = 0) -> None:  # fmt: skip
        self._server = _Server((host, port), signer, users)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    @property
    def issued(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(subject, access) of every token handed out, oldest first."""
        return self._server.issued

    @property
    def refused(self) -> int:
        """How many requests had bad credentials."""
        return self._server.refused

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """`--listen HOST:PORT --issuer I --bundle PEM --users JSON` (a `{name: password}` file):
    serve until SIGTERM; the bundle appears once the socket listens (what a starter waits for)."""
    parser = argparse.ArgumentParser(prog="python -m shoal.lab.tokenauth")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--users", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        users = json.loads(args.users.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"--users: {exc}")
    if not port.isdigit() or not isinstance(users, dict):
        parser.error("expected --listen HOST:PORT and --users holding {name: password}")
    signer = TokenSigner.generate(args.issuer)
    server = _Server((host, int(port)), signer, {str(k): str(v) for k, v in users.items()})
    server.echo = True
    partial = args.bundle.with_suffix(".tmp")
    signer.write_bundle(partial).rename(args.bundle)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
