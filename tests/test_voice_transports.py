"""Phone calls over SIP's other transports: TCP, and TLS with certificates made at test time.

`ivr serve` listens on UDP, TCP (the same port) and TLS (its own port); the `ivr call` softphone
(pjsua2, another process) dials `sip:...;transport=tcp` or `sip:...;transport=tls`, presses
keys through a short menu, and the tests check what the caller and the bank would notice: the
transport the call took, the branch the flow followed, the stored conversation. A softphone that
does not trust the server's CA must not get through; TLS files `ivr serve` cannot use stop it
at start, naming the setting. A `sips:` URI reaches the flow too (the worker answers it with a
sips: Contact).

The CA and the server's certificate are made with the `openssl` command in tmp_path, for this
run only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.config import ConfigError, load_settings
from ivr.conversation import Conversation, Role, Status
from ivr.web.keys import STORE
from tests.serve_fixtures import REPO, ServeApp, free_port
from tests.voice_fixtures import CallResult, VoiceServer, free_udp_tcp_port, start_voice_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is missing"),
]

KEYS_FLOW = """
flow: keys
language: en
numbers: ["6000"]
start: menu
steps:
  menu:
    menu:
      prompt: "For our opening hours, press 1. For our address, press 2."
      input: [dtmf]
      options:
        - {key: "1", next: hours}
        - {key: "2", next: address}
  hours:
    end: "We are open from nine to five. Goodbye."
  address:
    end: "We are at one Main Street. Goodbye."
"""
ADDRESS = "We are at one Main Street. Goodbye."
# The caller's part: press 2 as soon as the menu starts (a key stops the prompt), then hear
# the answer, after which the server hangs up (its BYE reaches us over the same transport).
PRESS_2 = ("wait-speech", "dtmf 2", "wait-prompt")


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the test CA's certificate: what a caller trusts
    certificate: Path  # the server's, signed by the CA, for 127.0.0.1
    private_key: Path


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def make_certificates(directory: Path, name: str = "127.0.0.1") -> Certificates:
    """A CA and a server certificate for `name` (an IP address) signed by it, as PEM files.
    P-256 keys: made in milliseconds, and what SIP phones commonly use."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ivr test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(
        f"subjectAltName = IP:{name}\nbasicConstraints = CA:FALSE\n"
        "keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "1", "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
            cwd=directory)  # fmt: skip
    return Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "tls")


def bot_texts(conv: Conversation) -> list[str]:
    return [t.text for t in conv.timeline if t.role is Role.BOT]


def customer_texts(conv: Conversation) -> list[str]:
    return [t.text for t in conv.timeline if t.role is Role.CUSTOMER]


async def keys_server(
    serve_app: ServeApp,
    flow_files: tuple[Path, Path],
    tmp_path: Path,
    certificates: Certificates,
) -> tuple[VoiceServer, int]:
    """`ivr serve` on UDP + TCP (a shared port) and TLS (a port of its own) with the keys
    flow; returns the server and its TLS port."""
    (flow_files[0] / "keys.yaml").write_text(KEYS_FLOW)
    tls_port = free_port()
    server = await start_voice_server(
        serve_app,
        tmp_path,
        transports="udp, tcp, tls",
        tls_port=tls_port,
        tls_certificate=str(certificates.certificate),
        tls_private_key=str(certificates.private_key),
        tls_ca=str(certificates.ca),
    )
    return server, tls_port


async def assert_pressed_2_over(server: VoiceServer, result: CallResult, transport: str) -> None:
    """The call went over `transport`, the flow took key 2 and said the address, then hung up."""
    assert result.ok, (result.outcome, result.stderr[-2000:])
    assert result.outcome["transport"] == transport
    assert result.outcome["hung_up_by"] == "remote"
    conv = await server.last_conversation()
    assert conv.status is Status.ENDED and conv.position.flow == "keys"
    assert customer_texts(conv) == ["2"]
    assert bot_texts(conv)[-1] == ADDRESS


async def test_a_call_over_tcp_follows_the_keys_through_the_menu(
    serve_app: ServeApp,
    flow_files: tuple[Path, Path],
    tmp_path: Path,
    certificates: Certificates,
) -> None:
    server, _ = await keys_server(serve_app, flow_files, tmp_path, certificates)
    result = await server.call(
        "6000", *PRESS_2, uri=f"sip:6000@127.0.0.1:{server.sip_port};transport=tcp"
    )
    await assert_pressed_2_over(server, result, "tcp")
    conv = await server.last_conversation()
    assert all(t.channel == "sip" for t in conv.timeline)


async def test_a_call_over_tls_with_keys_as_sip_info_takes_the_menu_branch(
    serve_app: ServeApp,
    flow_files: tuple[Path, Path],
    tmp_path: Path,
    certificates: Certificates,
) -> None:
    server, tls_port = await keys_server(serve_app, flow_files, tmp_path, certificates)
    uri = f"sip:6000@127.0.0.1:{tls_port};transport=tls"
    # A caller who does not trust the test CA (the system's CAs do not know it) hangs up during
    # the handshake: no INVITE reaches the server, which starts no conversation.
    untrusted = await server.call("6000", *PRESS_2, uri=uri, timeout=10)
    assert not untrusted.outcome["connected"], untrusted.outcome
    assert "certificate" in untrusted.outcome["reason"], untrusted.outcome
    assert await server.served.app[STORE].list_recent(1) == []
    # Keys as SIP INFO: requests inside the call travel over the TLS connection too.
    result = await server.call(
        "6000",
        *PRESS_2,
        uri=uri,
        extra=["--tls-ca", str(certificates.ca), "--dtmf-method", "info"],
    )
    await assert_pressed_2_over(server, result, "tls")


async def test_a_sips_uri_reaches_the_flow(
    serve_app: ServeApp,
    flow_files: tuple[Path, Path],
    tmp_path: Path,
    certificates: Certificates,
) -> None:
    server, tls_port = await keys_server(serve_app, flow_files, tmp_path, certificates)
    result = await server.call(
        "6000",
        *PRESS_2,
        uri=f"sips:6000@127.0.0.1:{tls_port}",
        extra=["--tls-ca", str(certificates.ca)],
    )
    assert result.ok, result.outcome
    assert result.outcome["transport"] == "tls"
    conv = await server.last_conversation()
    assert bot_texts(conv)[-1] == ADDRESS


# ------------------------------------------------------------------ bad TLS files


def serve(tmp_path: Path, **sip: str) -> subprocess.CompletedProcess[str]:
    """`ivr serve` with phone calls over UDP and TLS on free ports, and these [sip] settings;
    it is expected to stop by itself (at start), so the run is bounded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env.update(
        IVR_HTTP_PORT=str(free_port()),
        IVR_STORE_URL=f"sqlite:///{tmp_path}/ivr.db",
        IVR_API_TOKEN="t",
        IVR_FLOWS_RELOAD="no",
        IVR_SPEECH_CACHE_DIR=str(tmp_path / "prompt-cache"),
        IVR_SIP_PORT=str(free_udp_tcp_port()),
        IVR_SIP_TRANSPORTS="udp, tls",
        IVR_SIP_TLS_PORT=str(free_port()),
    )
    env.update({f"IVR_SIP_{key.upper()}": value for key, value in sip.items()})
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", "serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# What is wrong -> ([sip] settings replacing the good ones, what `ivr serve` says), with {name}
# standing for the paths of the `certificates` fixture's files.
BAD_TLS_FILES = {
    "missing-certificate": (
        {"tls_certificate": "{missing}"},
        "[sip] tls_certificate: {missing}: No such file or directory",
    ),
    "key-is-a-directory": (
        {"tls_private_key": "{directory}"},
        "[sip] tls_private_key: {directory}: Is a directory",
    ),
    "key-is-a-certificate": (
        {"tls_private_key": "{ca}"},
        "[sip] tls_private_key: {ca}: no PEM private key in it",
    ),
    "key-of-another-certificate": (
        {"tls_private_key": "{ca_key}"},
        "[sip] tls_private_key: {ca_key}: it does not match the certificate {certificate} "
        "([sip] tls_certificate)",
    ),
}


@pytest.mark.parametrize("case", BAD_TLS_FILES)
def test_tls_files_it_cannot_use_stop_ivr_serve_at_start_naming_the_setting(
    tmp_path: Path, certificates: Certificates, case: str
) -> None:
    directory = certificates.ca.parent
    paths = {
        "missing": str(directory / "missing.pem"),
        "directory": str(directory),
        "ca": str(certificates.ca),
        "ca_key": str(directory / "ca.key"),
        "certificate": str(certificates.certificate),
    }
    changes, expected = BAD_TLS_FILES[case]
    settings = {
        "tls_certificate": str(certificates.certificate),
        "tls_private_key": str(certificates.private_key),
        **{key: value.format(**paths) for key, value in changes.items()},
    }
    done = serve(tmp_path, **settings)
    assert done.returncode == 1, done.stderr[-2000:]
    # The last thing the operator reads is what to fix.
    assert done.stderr.strip().splitlines()[-1] == f"ivr serve: {expected.format(**paths)}"
    assert "answering SIP calls" not in done.stderr  # no worker was started


def test_a_busy_tls_port_stops_ivr_serve_at_start_naming_the_setting(
    tmp_path: Path, certificates: Certificates
) -> None:
    with socket.socket() as taken:  # another program's TLS listener
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(
            tmp_path,
            tls_port=str(port),
            tls_certificate=str(certificates.certificate),
            tls_private_key=str(certificates.private_key),
        )
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"ivr serve: [sip] cannot listen on tls 127.0.0.1:{port}: Address already in use"
        )
    )
    assert "IVR_SIP_TLS_PORT" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sip:1000@127.0.0.1:5999", "--tls-no-verify"], "are for dialling a sips: or"),
        (["sips:1000@127.0.0.1:5999", "--tls-ca", "{ca}", "--tls-no-verify"], "choose one"),
        (["sip:1000@127.0.0.1:5999;transport=tls", "--tls-ca", "{missing}"], "No such file"),
    ],
    ids=["tls-flag-without-tls", "trust-and-do-not-verify", "missing-ca-file"],
)
def test_the_softphone_refuses_tls_options_that_cannot_work(
    certificates: Certificates, args: list[str], message: str
) -> None:
    paths = {"ca": str(certificates.ca), "missing": str(certificates.ca.parent / "nope.pem")}
    done = subprocess.run(
        [sys.executable, "-m", "ivr.softphone", *(a.format(**paths) for a in args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stdout == ""  # nothing was dialled, so no outcome


def test_tls_on_the_tcp_port_is_refused_naming_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "sip.conf"
    conf.write_text(
        "[sip]\nport = 5070\ntransports = udp, tcp, tls\ntls_port = 5070\n"
        "tls_certificate = server.pem\ntls_private_key = server.key\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(conf, environ={})
    assert str(refused.value).startswith(f"{conf}:4: [sip] tls_port: 5070 is also [sip] port")
