"""Starting and stopping pjsua2 in a process: one endpoint, its own worker thread, no sound card.

Rules learnt the hard way (see the research notes in the design docs):
- every thread that touches pjsua2 must be registered with it, or pjlib aborts the process;
- C++ destructors run on whichever thread drops the last reference, so our pjsua2 subclasses
  register that thread first (`ThreadSafeDelete`);
- any pjsua2 object alive after `libDestroy()` aborts the process at exit, so shutdown ends with
  `os._exit` once the library is down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field

import pjsua2 as pj

log = logging.getLogger(__name__)

_registered = threading.local()
_endpoint: pj.Endpoint | None = None

# Codec names as pjsua2 knows them, by the names our config uses.
CODEC_IDS = {
    "PCMU": "PCMU/8000",
    "PCMA": "PCMA/8000",
    "G722": "G722/16000",
    "OPUS": "opus/48000",
    "SPEEX": "speex/16000",
    "GSM": "GSM/8000",
    "ILBC": "iLBC/8000",
}


TLS_HANDSHAKE_MS = 10_000  # a peer that connects and never finishes the handshake is dropped


@dataclass(frozen=True)
class EndpointOptions:
    host: str = "127.0.0.1"  # address SIP and RTP bind to
    udp_port: int | None = 5060  # None: no UDP transport
    tcp_port: int | None = None
    tls_port: int | None = None
    tls_certificate: str = ""  # PEM: our certificate (chain), shown to TLS peers
    tls_private_key: str = ""  # PEM, unencrypted
    tls_ca: str = ""  # PEM: CAs a peer's certificate is checked against (tls_verify_server)
    tls_verify_server: bool = False  # our outgoing TLS connections: check the far end's cert
    public_address: str = ""  # advertised in Contact and SDP when behind NAT
    rtp_port: int = 40000  # first RTP port...
    rtp_port_range: int = 1000  # ...and how many after it
    codecs: tuple[str, ...] = ("G722", "PCMU", "PCMA")  # in order of preference; others off
    max_calls: int = 4
    user_agent: str = "ivr"
    log_level: int = 1  # pjsip's own log (0-6) to stderr
    extra_codec_priority: dict[str, int] = field(default_factory=dict)


def register_thread(name: str = "py") -> None:
    """Make the calling thread known to pjlib (idempotent, cheap after the first call)."""
    if getattr(_registered, "done", False):
        return
    if _endpoint is not None and not _endpoint.libIsThreadRegistered():
        _endpoint.libRegisterThread(f"{name}-{threading.get_ident()}")
    _registered.done = True


class ThreadSafeDelete:
    """Mixin for pjsua2 subclasses: register the thread that ends up running the destructor."""

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if _endpoint is not None and not _endpoint.libIsThreadRegistered():
                _endpoint.libRegisterThread("del")
        parent = super()
        if hasattr(parent, "__del__"):
            parent.__del__()  # type: ignore[misc]


def start_endpoint(options: EndpointOptions) -> pj.Endpoint:
    """Create, configure and start the process's endpoint (call from the event-loop thread)."""
    global _endpoint
    ep = pj.Endpoint()
    ep.libCreate()
    _endpoint = ep
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 1  # pjsua2's own worker thread; callbacks come from it
    cfg.uaConfig.maxCalls = options.max_calls
    cfg.uaConfig.userAgent = options.user_agent
    cfg.logConfig.level = options.log_level
    cfg.logConfig.consoleLevel = options.log_level
    cfg.medConfig.clockRate = 16000  # our internal audio: 16 kHz, 20 ms frames
    cfg.medConfig.sndClockRate = 16000
    cfg.medConfig.audioFramePtime = 20
    # 3-4: the bridge resamples 8 kHz calls (G.711) with libresample's small filter. pjsua's
    # default (5) takes the large one, which was a third of a media worker's CPU; telephone
    # audio has nothing above 4 kHz for the larger filter to keep.
    cfg.medConfig.quality = 4
    cfg.medConfig.ecTailLen = 0  # no echo canceller: there is no loudspeaker
    cfg.medConfig.noVad = True  # pjmedia's VAD would suppress frames we want to analyse
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()  # no sound card: the conference bridge runs on a timer
    if options.udp_port is not None:
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, _transport(options, options.udp_port))
    if options.tcp_port is not None:
        ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, _transport(options, options.tcp_port))
    if options.tls_port is not None:
        tcfg = _transport(options, options.tls_port)
        tls_config(options, tcfg.tlsConfig)
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
    ep.libStart()
    set_codec_order(ep, options.codecs)
    return ep


def _transport(options: EndpointOptions, port: int) -> pj.TransportConfig:
    tcfg = pj.TransportConfig()
    tcfg.port = port
    tcfg.boundAddress = options.host
    if options.public_address:
        tcfg.publicAddress = options.public_address
    return tcfg


def tls_config(options: EndpointOptions, tls: pj.TlsConfig) -> None:
    """Fill the TLS transport's settings. pjsip reads the PEM files only at the first handshake
    (a missing file is not an error here), so `ivr serve` checks them before it starts."""
    tls.certFile = options.tls_certificate
    tls.privKeyFile = options.tls_private_key
    tls.CaListFile = options.tls_ca
    # pjsua2's default protocol set is TLS 1.0-1.2: refuse the broken old versions and allow
    # TLS 1.3 (a non-zero `proto` wins over `method`, which pjsip then ignores).
    tls.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3
    # pjsip also checks that the certificate names the host it dialled (subjectAltName or CN).
    tls.verifyServer = options.tls_verify_server
    tls.msecTimeout = TLS_HANDSHAKE_MS


def set_codec_order(ep: pj.Endpoint, codecs: tuple[str, ...]) -> None:
    """Offer/accept exactly `codecs`, first preferred: the others get priority 0 (disabled)."""
    wanted = [CODEC_IDS.get(c.upper(), c) for c in codecs]
    for info in ep.codecEnum2():
        ep.codecSetPriority(info.codecId, 0)
    for rank, name in enumerate(wanted):
        matched = [i.codecId for i in ep.codecEnum2() if i.codecId.lower().startswith(name.lower())]
        if not matched:
            raise ValueError(f"codec {name!r} is not available in this pjsua2 build")
        for codec_id in matched:
            ep.codecSetPriority(codec_id, 250 - rank)


def media_transport(options: EndpointOptions) -> pj.TransportConfig:
    """RTP ports and addresses for an account's calls."""
    tcfg = pj.TransportConfig()
    tcfg.port = options.rtp_port
    tcfg.portRange = options.rtp_port_range
    tcfg.boundAddress = options.host
    if options.public_address:
        tcfg.publicAddress = options.public_address
    return tcfg


def available_codecs() -> list[str]:
    """Codec ids of this pjsua2 build (needs a started endpoint)."""
    assert _endpoint is not None
    return [i.codecId for i in _endpoint.codecEnum2()]


def current_endpoint() -> pj.Endpoint | None:
    """The process's endpoint once `start_endpoint` has created the library, even when it then
    failed half way (a busy SIP port): the library exists and must still be destroyed."""
    return _endpoint


def shutdown_and_exit(ep: pj.Endpoint | None = None, status: int = 0) -> None:
    """Hang up everything, destroy the library and leave the process at once: a pjsua2
    object collected after libDestroy would abort the interpreter on its way out."""
    import gc

    ep = ep or _endpoint
    if ep is not None:
        with contextlib.suppress(Exception):
            ep.hangupAllCalls()
        gc.collect()
        with contextlib.suppress(Exception):
            ep.libDestroy()
    logging.shutdown()
    os._exit(status)
