"""Support for the operations tests (no tests here): a real HTTP server on 127.0.0.1 that records what it receives,
a real SMTP server (aiosmtpd), SMTP servers that never answer, and a self-signed TLS certificate.

Paths containing ``hang`` answer only when the test ends; paths containing ``boom`` answer 500.
"""

from __future__ import annotations

import http.server
import threading


class Recorder(http.server.ThreadingHTTPServer):
    """``requests``: a list of ``(method, path, body bytes, headers dict)`` in arrival order."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, bytes, dict]] = []
        self.release = threading.Event()
        self.arrived = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [r[1] for r in self.requests]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, body, dict(self.headers)))
        self.server.arrived.set()
        if "hang" in self.path:
            self.server.release.wait(30)
        status = 500 if "boom" in self.path else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_HEAD = _handle

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


def start_recorder() -> Recorder:
    server = Recorder()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop_recorder(server: Recorder) -> None:
    server.release.set()
    server.shutdown()
    server.server_close()


# -- SMTP ---------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (aiosmtpd's Controller needs the number up front)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailSink:
    """An aiosmtpd handler that keeps what arrives: ``messages`` holds ``email.message.EmailMessage``
    objects, ``envelopes`` ``(mail_from, rcpt_tos, tls, login)`` tuples. Addresses in ``refuse``
    get 550 at RCPT."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.messages: list = []
        self.envelopes: list[tuple[str, list[str], bool, str | None]] = []
        self.refuse = refuse
        self.arrived = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook name
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        import email
        import email.policy

        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content,
                                                      policy=email.policy.default))
        login = session.auth_data.login.decode() if session.authenticated and session.auth_data else None
        tls = server.transport.get_extra_info("ssl_object") is not None  # STARTTLS or SMTPS
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), tls, login))
        self.arrived.set()
        return "250 Message accepted"


def password_check(user: str, password: str):
    """An aiosmtpd authenticator that accepts exactly ``user``/``password``."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == \
            (user.encode(), password.encode())
        # handled=False: aiosmtpd then answers 535 itself (handled=True would leave the client waiting).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


def start_smtp(sink: MailSink, **kwargs):
    """A real SMTP server (aiosmtpd) on 127.0.0.1 handing messages to ``sink``; ``kwargs`` go to its
    Controller (``authenticator=``, ``tls_context=``, ``require_starttls=``, ``ssl_context=``...).
    Returns the started controller: ``controller.port``, ``controller.stop()``."""
    from aiosmtpd.controller import Controller

    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


class SilentServer:
    """Accepts SMTP connections and never answers properly: ``trickle=False`` says nothing at all (the
    client's socket timeout fires); ``trickle=True`` sends an endless multi-line greeting, one
    line every 0.3 s, so no socket timeout ever fires and only an overall deadline ends the wait."""

    def __init__(self, trickle: bool = False) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.trickle = trickle
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.conns: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            self.connected.set()
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn) -> None:
        while not self.stop.wait(0.3):
            try:
                conn.sendall(b"220-still thinking\r\n")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()


def self_signed_certificate(directory):
    """``(certfile, keyfile)`` for 127.0.0.1 and localhost, made with the ``cryptography`` package if it is
    installed, else with ``openssl``; skips the calling test when neither is there."""
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    try:
        import cryptography  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("needs the cryptography package or openssl to make a TLS certificate")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def server_tls_context(cert, key):
    """An ``ssl.SSLContext`` for the server side of a test SMTP server."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context
