"""Email alerts (``--notify mailto:``) against a real SMTP server on 127.0.0.1 (aiosmtpd): plain, with AUTH,
with STARTTLS and SMTPS on a self-signed certificate, refusing, and never answering."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_ops import summary
from test_ops_support import (
    MailSink,
    SilentServer,
    password_check,
    self_signed_certificate,
    server_tls_context,
    start_smtp,
)

from batchkit.cli.main import cli
from batchkit.errors import UsageError
from batchkit.ops.mail import SmtpServer, parse_mailto
from batchkit.ops.operations import Operations

from conftest import PY, python_env

pytest.importorskip("aiosmtpd")
# The loopback AUTH cases run a server that takes a login without TLS, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

HOST = socket.gethostname()
FAILS = [{"key": "b.txt", "type": "ValueError", "message": "bad header", "kind": "exception"}]


@pytest.fixture
def sink():
    return MailSink()


@pytest.fixture
def smtp(sink, monkeypatch):
    """A plain SMTP server on 127.0.0.1, configured through BATCHKIT_SMTP."""
    controller = start_smtp(sink)
    monkeypatch.setenv("BATCHKIT_SMTP", f"127.0.0.1:{controller.port}")
    for name in ("BATCHKIT_SMTP_USER", "BATCHKIT_SMTP_PASSWORD", "BATCHKIT_SMTP_STARTTLS", "BATCHKIT_SMTP_FROM",
                 "BATCHKIT_CRON_ENTRY"):
        monkeypatch.delenv(name, raising=False)
    yield controller
    controller.stop()


@pytest.fixture
def certificate(tmp_path):
    return self_signed_certificate(tmp_path)


def failed_run(ops: Operations, run_id: int = 7) -> None:
    ops.started(run_id, {})
    ops.finished(summary("failed", 2, 1, failures=FAILS, run_id=run_id), 1)


# -- what arrives -------------------------------------------------------------------------------

def test_failed_run_emails_the_summary_with_subject_counts_and_headers(smtp, sink):
    warnings = []
    failed_run(Operations("nightly", notify="mailto:ops@example.com,dev@example.com", warn=warnings.append))
    assert warnings == []
    [message] = sink.messages
    assert message["Subject"] == f"batchkit: nightly failed on {HOST} (1 failed)"
    assert message["From"] == f"batchkit@{HOST}"
    assert message["To"] == "ops@example.com, dev@example.com"
    assert message["Auto-Submitted"] == "auto-generated" and message["Message-ID"] and message["Date"]
    body = message.get_content()
    assert f"batchkit job `nightly` failed on {HOST} (exit 1, run 7)" in body
    assert "b.txt: ValueError: bad header" in body
    assert "items:    3 total: 2 succeeded, 1 failed, 0 skipped" in body
    assert "Details: batchkit show 7 --tracebacks" in body
    [(mail_from, rcpt, tls, login)] = sink.envelopes
    assert (mail_from, rcpt, tls, login) == (f"batchkit@{HOST}", ["ops@example.com", "dev@example.com"], False, None)


def test_successful_run_is_not_emailed_unless_notify_on_always(smtp, sink, monkeypatch):
    ops = Operations("nightly", notify="mailto:ops@example.com")
    ops.started(1, {})
    ops.finished(summary(), 0)
    assert sink.messages == []

    monkeypatch.setenv("BATCHKIT_SMTP_FROM", "Batch Robot <robot@example.org>")
    ops = Operations("nightly", notify="mailto:ops@example.com", notify_on="always")
    ops.started(2, {})
    ops.finished(summary(succeeded=5), 0)
    [message] = sink.messages
    assert message["Subject"] == f"batchkit: nightly succeeded on {HOST} (5 succeeded)"
    assert message["From"] == "Batch Robot <robot@example.org>"
    assert sink.envelopes[0][0] == "robot@example.org"


def test_a_named_run_is_named_in_the_subject_and_text(smtp, sink, monkeypatch):
    monkeypatch.setenv("BATCHKIT_CRON_ENTRY", "nightly-sums")
    failed_run(Operations("checksum", notify="mailto:ops@example.com"))
    [message] = sink.messages
    assert message["Subject"] == f"batchkit: nightly-sums failed on {HOST} (1 failed)"
    body = message.get_content()
    assert f"batchkit job `checksum` (nightly-sums) failed on {HOST}" in body
    assert "name:     nightly-sums" in body


def test_no_secret_reaches_the_mail_and_the_login_is_used(sink, monkeypatch):
    """AUTH over a plain connection is allowed to a loopback server only; the password, and any other
    secret from the environment, never appears in what is sent."""
    password, token = "pw-9f8e7d6c5b", "tok-1234567890abcdef"
    controller = start_smtp(sink, authenticator=password_check("alerts", password), auth_require_tls=False,
                            auth_required=True)
    try:
        monkeypatch.setenv("BATCHKIT_SMTP", f"localhost:{controller.port}")
        monkeypatch.setenv("BATCHKIT_SMTP_USER", "alerts")
        monkeypatch.setenv("BATCHKIT_SMTP_PASSWORD", password)
        monkeypatch.setenv("MY_API_TOKEN", token)
        leaky = [{"key": "x", "type": "PermissionError", "kind": "exception",
                  "message": f"login with {password} and {token} refused; see https://bob:{password}@h/x"}]
        ops = Operations("nightly", notify="mailto:ops@example.com")
        ops.started(3, {})
        ops.finished(summary("failed", 0, 1, failures=leaky, run_id=3), 1)
    finally:
        controller.stop()
    [message] = sink.messages
    raw = message.as_bytes()
    assert password.encode() not in raw and token.encode() not in raw
    assert "login with *** and *** refused" in message.get_content()
    assert sink.envelopes[0][3] == "alerts"  # the server saw the credentials


def test_wrong_password_is_a_warning_that_does_not_show_it(sink, monkeypatch):
    controller = start_smtp(sink, authenticator=password_check("alerts", "right-password"), auth_require_tls=False)
    try:
        monkeypatch.setenv("BATCHKIT_SMTP", f"127.0.0.1:{controller.port}")
        monkeypatch.setenv("BATCHKIT_SMTP_USER", "alerts")
        monkeypatch.setenv("BATCHKIT_SMTP_PASSWORD", "abc")  # too short for the environment scan: masked anyway
        warnings = []
        failed_run(Operations("nightly", notify="mailto:ops@example.com", warn=warnings.append))
    finally:
        controller.stop()
    assert sink.messages == []
    [warning] = warnings
    assert "email to mailto:ops@example.com failed" in warning and "refused the login of 'alerts'" in warning
    assert "BATCHKIT_SMTP_PASSWORD" in warning and "abc" not in warning.replace("BATCHKIT", "")


def test_starttls_with_login_verifies_the_certificate(sink, certificate, monkeypatch):
    cert, key = certificate
    controller = start_smtp(sink, tls_context=server_tls_context(cert, key), require_starttls=True,
                            authenticator=password_check("alerts", "s3cret-pass"), auth_require_tls=True)
    try:
        monkeypatch.setenv("BATCHKIT_SMTP", f"127.0.0.1:{controller.port}")
        monkeypatch.setenv("BATCHKIT_SMTP_STARTTLS", "1")
        monkeypatch.setenv("BATCHKIT_SMTP_USER", "alerts")
        monkeypatch.setenv("BATCHKIT_SMTP_PASSWORD", "s3cret-pass")

        # Without trusting the self-signed certificate: refused, as one warning line.
        monkeypatch.setenv("SSL_CERT_FILE", str(Path(cert).parent / "nothing.pem"))
        warnings = []
        failed_run(Operations("nightly", notify="mailto:ops@example.com", warn=warnings.append))
        assert sink.messages == []
        assert len(warnings) == 1 and "certificate check failed" in warnings[0] and "SSL_CERT_FILE" in warnings[0]

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        warnings.clear()
        failed_run(Operations("nightly", notify="mailto:ops@example.com", warn=warnings.append))
    finally:
        controller.stop()
    assert warnings == []
    [message] = sink.messages
    assert message["Subject"] == f"batchkit: nightly failed on {HOST} (1 failed)"
    assert sink.envelopes[0][2:] == (True, "alerts")  # over TLS, logged in


def test_smtps_url_speaks_tls_from_the_first_byte(sink, certificate, monkeypatch):
    cert, key = certificate
    controller = start_smtp(sink, ssl_context=server_tls_context(cert, key))
    try:
        monkeypatch.setenv("BATCHKIT_SMTP", f"smtps://127.0.0.1:{controller.port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        warnings = []
        failed_run(Operations("nightly", notify="mailto:ops@example.com", warn=warnings.append))
    finally:
        controller.stop()
    assert warnings == []
    assert len(sink.messages) == 1 and sink.envelopes[0][2] is True


def test_starttls_asked_of_a_server_without_it_is_a_warning_not_a_plain_send(smtp, sink, monkeypatch):
    monkeypatch.setenv("BATCHKIT_SMTP_STARTTLS", "1")
    warnings = []
    failed_run(Operations("nightly", notify="mailto:ops@example.com", warn=warnings.append))
    assert sink.messages == []
    assert len(warnings) == 1 and "STARTTLS extension not supported" in warnings[0]


def test_a_refused_recipient_is_a_warning_and_the_others_get_the_mail(monkeypatch):
    sink = MailSink(refuse=("nobody@example.com",))
    controller = start_smtp(sink)
    try:
        monkeypatch.setenv("BATCHKIT_SMTP", f"127.0.0.1:{controller.port}")
        warnings = []
        failed_run(Operations("nightly", notify="mailto:ops@example.com,nobody@example.com", warn=warnings.append))
    finally:
        controller.stop()
    assert sink.envelopes[0][1] == ["ops@example.com"]
    [warning] = warnings
    assert "refused nobody@example.com (550 5.1.1 no such mailbox here)" in warning


def test_webhook_and_email_targets_together(smtp, sink):
    from test_ops_support import start_recorder, stop_recorder

    server = start_recorder()
    try:
        failed_run(Operations("nightly", notify=[server.url + "/hook", "mailto:ops@example.com"]))
    finally:
        stop_recorder(server)
    assert server.paths() == ["/hook"] and len(sink.messages) == 1


# -- bounded time -----------------------------------------------------------------------------------

@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "endless-greeting"])
def test_a_server_that_never_answers_costs_at_most_the_deadline_and_one_warning(trickle, monkeypatch):
    server = SilentServer(trickle=trickle)
    try:
        monkeypatch.setenv("BATCHKIT_SMTP", f"127.0.0.1:{server.port}")
        warnings = []
        ops = Operations("nightly", notify="mailto:ops@example.com", warn=warnings.append)
        ops.started(1, {})
        t0 = time.monotonic()
        ops.finished(summary("failed", 1, 1), 1)
        waited = time.monotonic() - t0
        assert server.connected.is_set()
    finally:
        server.close()
    # The 2 s deadline is the feature (the endless greeting never trips a socket timeout); plus slack.
    assert waited < 3.5
    assert len(warnings) == 1, warnings
    assert "did not answer within 2s" in warnings[0] or "unanswered after the 2s limit" in warnings[0]


# -- configuration -----------------------------------------------------------------------------------

def test_mailto_addresses_are_parsed_and_checked():
    assert parse_mailto("mailto:ops@example.com") == ("ops@example.com",)
    assert parse_mailto("MAILTO:a@x.org, b%2Bc@y.org") == ("a@x.org", "b+c@y.org")
    for bad, says in [("mailto:", "needs an address"), ("mailto:,", "needs an address"),
                      ("mailto:ops", "not an email address"), ("mailto:ops@", "not an email address"),
                      ("mailto:a b@x.org", "not an email address"), ("mailto:a@x.org?subject=hi", "no ?subject=")]:
        with pytest.raises(UsageError, match=re.escape(says)):
            parse_mailto(bad)


def test_smtp_server_settings_from_the_environment():
    def server(**env):
        return SmtpServer.from_env(env)

    plain = server(BATCHKIT_SMTP="mail.example.com")
    assert (plain.host, plain.port, plain.tls, plain.user) == ("mail.example.com", 25, "none", None)
    assert plain.sender == f"batchkit@{HOST}"
    assert server(BATCHKIT_SMTP="mail.example.com:587").tls == "starttls"
    assert server(BATCHKIT_SMTP="mail.example.com:587", BATCHKIT_SMTP_STARTTLS="0").tls == "none"
    assert server(BATCHKIT_SMTP="mail.example.com:2525", BATCHKIT_SMTP_STARTTLS="yes").tls == "starttls"
    assert (server(BATCHKIT_SMTP="mail.example.com:465").tls, server(BATCHKIT_SMTP="smtps://m.example").port) == \
        ("ssl", 465)
    assert server(BATCHKIT_SMTP="[::1]:2525").host == "::1"
    authed = server(BATCHKIT_SMTP="m.example:587", BATCHKIT_SMTP_USER="u", BATCHKIT_SMTP_PASSWORD="hunter2hunter2")
    assert "hunter2" not in repr(authed) and "hunter2" not in str(authed)
    assert server(BATCHKIT_SMTP="127.0.0.1:25", BATCHKIT_SMTP_USER="u").user == "u"  # loopback: plain is fine

    for env, says in [({}, "set it to host"), ({"BATCHKIT_SMTP": "m.example:x"}, "is not host"),
                      ({"BATCHKIT_SMTP": "http://m.example"}, "is not host"),
                      ({"BATCHKIT_SMTP": "smtp://u:p@m.example"}, "BATCHKIT_SMTP_USER"),
                      ({"BATCHKIT_SMTP": "m.example", "BATCHKIT_SMTP_USER": "u"}, "not encrypted"),
                      ({"BATCHKIT_SMTP": "m.example", "BATCHKIT_SMTP_PASSWORD": "p"}, "without BATCHKIT_SMTP_USER"),
                      ({"BATCHKIT_SMTP": "m.example", "BATCHKIT_SMTP_STARTTLS": "maybe"}, "use 1 or 0"),
                      ({"BATCHKIT_SMTP": "m.example", "BATCHKIT_SMTP_FROM": "robot"}, "BATCHKIT_SMTP_FROM")]:
        with pytest.raises(UsageError, match=says):
            server(**env)


def test_mailto_without_smtp_server_is_refused_before_the_run(monkeypatch):
    monkeypatch.delenv("BATCHKIT_SMTP", raising=False)
    with pytest.raises(UsageError, match="BATCHKIT_SMTP"):
        Operations("nightly", notify="mailto:ops@example.com")


# -- the command line ---------------------------------------------------------------------------------

GRADE = '''import batchkit as bk


@bk.job(backend="serial")
def grade(item: str) -> int:
    """Fail items below five."""
    if int(item) < 5:
        raise ValueError(f"{item} is below 5")
    return int(item)
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "grade.py").write_text(GRADE)
    (tmp_path / "marks.txt").write_text("7\n3\n9\n")
    return tmp_path


def test_cli_refuses_mailto_without_address_or_server_in_one_line(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("BATCHKIT_SMTP", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "grade", "--input", "marks.txt", "--notify", "mailto:"])
    assert result.exit_code == 2
    assert "mailto: needs an address" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["run", "grade", "--input", "marks.txt", "--notify", "mailto:ops@example.com"])
    assert result.exit_code == 2
    assert "set it to host[:port]" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["run", "grade", "--input", "marks.txt", "--notify", "slack"])
    assert result.exit_code == 2 and "is not an http(s):// URL or mailto:ADDRESS" in result.output


def test_batchkit_run_emails_the_failure_end_to_end(project, sink):
    controller = start_smtp(sink, authenticator=password_check("alerts", "never-written-9x7"),
                            auth_require_tls=False, auth_required=True)
    env = python_env()
    env.update(BATCHKIT_SMTP=f"127.0.0.1:{controller.port}", BATCHKIT_SMTP_USER="alerts",
               BATCHKIT_SMTP_PASSWORD="never-written-9x7")
    log = project / "run.log"
    try:
        result = subprocess.run([PY, "-m", "batchkit", "run", "jobs/grade.py", "--input", "marks.txt",
                                 "--notify", "mailto:ops@example.com", "--notify", "mailto:dev@example.com",
                                 "--log-file", str(log), "--quiet"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=60)
    finally:
        controller.stop()
    assert result.returncode == 1, result.stderr
    assert "warning" not in result.stderr
    assert sorted(e[1][0] for e in sink.envelopes) == ["dev@example.com", "ops@example.com"]
    assert {e[3] for e in sink.envelopes} == {"alerts"}
    message = sink.messages[0]
    assert message["Subject"] == f"batchkit: grade failed on {HOST} (1 failed)"
    body = message.get_content()
    assert "3: ValueError: 3 is below 5" in body and "2 succeeded, 1 failed" in body
    # The password is nowhere batchkit writes: not in the mail, the log, the journal or the output.
    db = Path(env["BATCHKIT_HOME"]) / "batchkit.db"
    with sqlite3.connect(db) as conn:
        dumped = "\n".join(conn.iterdump())
    for text in (message.as_string(), log.read_text(), dumped, result.stdout, result.stderr):
        assert "never-written-9x7" not in text


def test_batchkit_run_with_a_hung_mail_server_keeps_its_exit_code_and_warns_once(project, monkeypatch):
    server = SilentServer(trickle=True)
    try:
        env = python_env()
        env["BATCHKIT_SMTP"] = f"127.0.0.1:{server.port}"
        t0 = time.monotonic()
        result = subprocess.run([PY, "-m", "batchkit", "run", "jobs/grade.py", "--input", "marks.txt",
                                 "--notify", "mailto:ops@example.com", "--quiet"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    finally:
        server.close()
    assert result.returncode == 1
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "unanswered after the 2s limit" in warnings[0], result.stderr
    assert took < 30  # the endless greeting would hold it forever without the deadline
