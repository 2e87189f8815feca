"""Email alerts over SMTP: ``--notify mailto:ops@example.com[,dev@example.com]``.

The server and credentials come from the environment only, so they never appear in a command
line, a crontab entry, the journal or a log:

``BATCHKIT_SMTP``
    ``host[:port]`` (port 25 when omitted), or ``smtp://host[:port]`` / ``smtps://host[:port]``.
    Port 465 or ``smtps://`` means TLS from the first byte (SMTPS, default port 465).
``BATCHKIT_SMTP_STARTTLS``
    ``1`` to upgrade the connection with STARTTLS, ``0`` not to. Default: on for port 587 (the
    submission port, where servers expect it), off otherwise. When asked for, a server that does
    not offer STARTTLS is a failure, never a silent downgrade.
``BATCHKIT_SMTP_USER``, ``BATCHKIT_SMTP_PASSWORD``
    AUTH credentials. Sent only over TLS, or to a server on this machine (a loopback address).
``BATCHKIT_SMTP_FROM``
    The From address (``addr`` or ``Name <addr>``); default ``batchkit@<hostname>``.

Certificates are checked against the system's CAs and the server's name; point ``SSL_CERT_FILE``
at a private CA's certificate to trust it. Sending happens in :class:`~batchkit.ops.notify.Courier`'s
background threads, under its one deadline; every failure becomes a :class:`MailError` with a
one-line reason.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from ..errors import UsageError

if TYPE_CHECKING:  # email and smtplib load only when a mail is sent
    from email.message import EmailMessage

SMTP_ENV = "BATCHKIT_SMTP"
SMTPS_PORT, SUBMISSION_PORT, SMTP_PORT = 465, 587, 25
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class MailError(OSError):
    """Sending an email failed; the message is the one-line reason (no credentials in it)."""


def is_mailto(target: str) -> bool:
    """Whether a ``--notify`` target is a ``mailto:`` address list."""
    return target[:7].lower() == "mailto:"


def check_address(address: str, what: str = "address") -> str:
    """Return the bare ``local@domain`` of ``address``; raise :class:`~batchkit.UsageError` if it is not one."""
    from email.headerregistry import Address
    from email.utils import parseaddr

    name, addr = parseaddr(address)
    try:
        parsed = Address(addr_spec=addr) if addr else None
    except (ValueError, IndexError):  # the email parser raises both for malformed addresses
        parsed = None
    if parsed is None or not parsed.username or not parsed.domain or any(c.isspace() for c in addr):
        raise UsageError(f"{what} {address!r} is not an email address (like ops@example.com)")
    return addr


def parse_mailto(target: str) -> tuple[str, ...]:
    """The recipients of ``mailto:ADDRESS[,ADDRESS...]``; raise :class:`~batchkit.UsageError` if there are none
    or one is not an email address.

    >>> parse_mailto("mailto:ops@example.com,dev@example.com")
    ('ops@example.com', 'dev@example.com')
    """
    if not is_mailto(target):
        raise UsageError(f"--notify {target!r} is not a mailto: address")
    body = target[7:]
    if "?" in body:  # mailto:x?subject=... : we write the subject ourselves
        raise UsageError(f"--notify {target!r}: give only addresses after mailto: (no ?subject= or other fields)")
    addresses = [urllib.parse.unquote(a).strip() for a in body.split(",")]
    addresses = [a for a in addresses if a]
    if not addresses:
        raise UsageError("--notify mailto: needs an address, e.g. --notify mailto:ops@example.com")
    return tuple(check_address(a, "--notify mailto:") for a in addresses)


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    value = environ.get(name)
    if value is None:
        return None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise UsageError(f"{name}={value!r}: use 1 or 0")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send: read once per run from the environment by :meth:`from_env`."""

    host: str
    port: int = SMTP_PORT
    tls: str = "none"  # "none", "starttls" or "ssl" (SMTPS)
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never shown, logged or stored
    sender: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpServer:
        """The server configured by ``BATCHKIT_SMTP*``; raise :class:`~batchkit.UsageError` saying what to set."""
        env = os.environ if environ is None else environ
        spec = (env.get(SMTP_ENV) or "").strip()
        if not spec:
            raise UsageError(f"--notify mailto: sends mail through the SMTP server in ${SMTP_ENV}; "
                             f"set it to host[:port], e.g. {SMTP_ENV}=smtp.example.com:587")
        parts = urllib.parse.urlsplit(spec if "://" in spec else "//" + spec)
        try:
            port = parts.port
        except ValueError:
            port = -1
        bad = f"{SMTP_ENV}={spec!r} is not host[:port] (e.g. smtp.example.com:587)"
        if parts.scheme not in ("", "smtp", "smtps") or not parts.hostname or port == -1 or \
                parts.path not in ("", "/") or parts.query:
            raise UsageError(bad)
        if parts.username is not None or parts.password is not None:
            raise UsageError(f"{SMTP_ENV}: give the host only; put credentials in "
                             "BATCHKIT_SMTP_USER and BATCHKIT_SMTP_PASSWORD")
        smtps = parts.scheme == "smtps" or port == SMTPS_PORT
        port = port or (SMTPS_PORT if smtps else SMTP_PORT)
        starttls = _flag(env, "BATCHKIT_SMTP_STARTTLS")
        tls = "ssl" if smtps else "starttls" if (starttls if starttls is not None else port == SUBMISSION_PORT) \
            else "none"
        user, password = env.get("BATCHKIT_SMTP_USER") or None, env.get("BATCHKIT_SMTP_PASSWORD") or None
        if password and not user:
            raise UsageError("BATCHKIT_SMTP_PASSWORD is set without BATCHKIT_SMTP_USER; set both or neither")
        if user and tls == "none" and not _is_loopback(parts.hostname):
            raise UsageError(f"BATCHKIT_SMTP_USER is set but the connection to {parts.hostname}:{port} is not "
                             "encrypted; use port 587 or 465, or set BATCHKIT_SMTP_STARTTLS=1")
        sender = env.get("BATCHKIT_SMTP_FROM") or f"batchkit@{socket.gethostname()}"
        check_address(sender, "BATCHKIT_SMTP_FROM")
        return cls(parts.hostname, port, tls, user, password, sender)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + {"none": "", "starttls": " (STARTTLS)", "ssl": " (TLS)"}[self.tls]

    def scrub(self, text: str) -> str:
        """``text`` with the password masked, however short it is (redact() skips values under 4 characters)."""
        return text.replace(self.password, "***") if self.password else text


def build_message(server: SmtpServer, recipients: tuple[str, ...], subject: str, body: str) -> EmailMessage:
    """A plain-text message from ``server.sender`` to ``recipients``, marked as machine-sent."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["From"] = server.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = " ".join(server.scrub(subject).split())  # a header is one line
    message["Date"] = formatdate(localtime=True)
    # make_msgid() without a domain calls socket.getfqdn(), which can wait seconds on a broken resolver.
    message["Message-ID"] = make_msgid("batchkit", domain=socket.gethostname() or "localhost")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to a robot
    message.set_content(server.scrub(body))
    return message


def deliver(server: SmtpServer, message: EmailMessage, recipients: tuple[str, ...], timeout: float) -> int:
    """Send ``message`` to ``recipients``; returns the SMTP status (250).

    ``timeout`` bounds each network wait (connect, each reply). Raises :class:`MailError` with a
    one-line reason on any failure, including recipients the server refused.
    """
    import smtplib
    import ssl
    from email.utils import parseaddr

    # EHLO name: the plain host name (getfqdn() may block on DNS for longer than our deadline).
    local = socket.gethostname() or "localhost"
    try:
        context = ssl.create_default_context() if server.tls != "none" else None
        if server.tls == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, local_hostname=local,
                                                    timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, local_hostname=local, timeout=timeout)
        with client:
            if server.tls == "starttls":
                client.starttls(context=context)
            if server.user:
                client.login(server.user, server.password or "")
            refused = client.send_message(message, from_addr=parseaddr(server.sender)[1], to_addrs=list(recipients))
    except Exception as exc:  # every failure becomes one line; the caller reports it as a warning
        raise MailError(server.scrub(explain(exc, server, timeout))) from None
    if refused:
        raise MailError(_refused(refused))
    return 250


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(text.split())}".strip()


def _refused(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "the server refused " + "; ".join(f"{addr} ({_reply(*reply)})" for addr, reply in refused.items())


def explain(exc: BaseException, server: SmtpServer, timeout: float) -> str:
    """One line saying why sending failed, and what to check where that helps."""
    import smtplib
    import ssl

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _refused(exc.recipients)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (f"{server} refused the login of {server.user!r} ({_reply(exc.smtp_code, exc.smtp_error)}); "
                "check BATCHKIT_SMTP_USER and BATCHKIT_SMTP_PASSWORD")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"{server} refused the sender {exc.sender} ({_reply(exc.smtp_code, exc.smtp_error)}); " \
               "check BATCHKIT_SMTP_FROM"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{server} answered {_reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{server}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{server}: certificate check failed ({exc.verify_message}); "
                "set SSL_CERT_FILE to trust a private CA")
    # smtplib reports a timed-out read as SMTPServerDisconnected, with the timeout as its context.
    timeouts = (socket.timeout, TimeoutError)  # distinct classes before Python 3.10
    if isinstance(exc, timeouts) or isinstance(exc.__context__, timeouts):
        return f"{server} did not answer within {timeout:g}s"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{server} closed the connection ({exc})" if str(exc) else f"{server} closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach {server}: {exc.strerror}"
    return f"{server}: {type(exc).__name__}: {exc}" if str(exc) else f"{server}: {type(exc).__name__}"
