"""Typed settings: embedded defaults, then an INI file, then `IVR_<SECTION>_<KEY>` variables.

`sip.conf.example` documents every key with its default; this module is the one place those
defaults live. A wrong value is reported with its place (`sip.conf:12: [http] port: ...` or
`IVR_HTTP_PORT: ...`) and `ivr serve` refuses to start on it rather than guess.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A setting that cannot be used; the message names where it was written."""


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8700
    public_url: str = ""  # how customers reach us (links in SMS); default http://host:port
    # Signs continue links (/c/<token>); the same on every node. Empty: one is made once and
    # kept in the store, so links sent before a restart still open.
    link_secret: str = ""
    link_minutes: float = 60.0  # how long a continue link opens its conversation


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///data/ivr.sqlite3"


@dataclass(frozen=True)
class ApiSettings:
    token: str = ""  # empty: a random token is made at start and printed once


@dataclass(frozen=True)
class FlowsSettings:
    dialogs: str = "dialogs"  # flows and intents
    prompts: str = "prompts"  # prompt catalogues
    chat_flow: str = "bank"  # the flow a new web chat starts
    # Other flows a chat may ask for by name (comma-separated); no others, so a visitor cannot
    # start internal flows or enter a sub-flow at its middle.
    chat_flows: str = "parcel"

    def chat_allowed(self, flow: str) -> bool:
        allowed = {f.strip() for f in self.chat_flows.split(",") if f.strip()}
        return flow == self.chat_flow or flow in allowed

    reload: bool = True  # watch the files and apply valid edits to new conversations


@dataclass(frozen=True)
class NluSettings:
    engine: str = "builtin"  # builtin | rasa
    threshold: float = 0.6  # built-in matcher: below this, no intent
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_threshold: float = 0.6  # Rasa answers below this count as no intent
    rasa_timeout: float = 1.0  # seconds; slower answers fall back to the built-in matcher


@dataclass(frozen=True)
class ChatSettings:
    max_message_bytes: int = 4096
    idle_timeout: float = 900.0  # seconds a chat may stay silent before it is closed


@dataclass(frozen=True)
class SmsSettings:
    # Where texts go: outbox (stored and shown in the agent desktop, sent nowhere: the default
    # until a gateway is configured), kannel (its smsbox sendsms interface) or webhook (a
    # provider with a Twilio-style HTTP API).
    gateway: str = "outbox"
    number: str = "5550000"  # our number: the sender of what we send, the receiver of replies
    flow: str = "bank"  # the flow a text from a number without an open conversation starts
    # Inbound texts (Kannel's get-url, a provider's webhook) must carry this as `token`; empty:
    # only from this machine (Kannel beside the server).
    inbound_token: str = ""
    kannel_url: str = "http://127.0.0.1:13013/cgi-bin/sendsms"
    kannel_username: str = ""
    kannel_password: str = ""
    webhook_url: str = ""  # e.g. https://api.provider.example/2010-04-01/Accounts/AC1/Messages.json
    webhook_username: str = ""  # HTTP basic auth (Twilio: the account SID)
    webhook_password: str = ""  # (Twilio: the auth token; also checks X-Twilio-Signature)
    max_attempts: int = 10  # sending attempts before a text is given up (and shown as failed)
    retry_seconds: float = 2.0  # first back-off; doubles per attempt...
    max_retry_seconds: float = 300.0  # ...up to this
    max_text_chars: int = 1000  # longer texts are cut at a sentence (inbound and outbound)
    idle_hours: float = 24.0  # a conversation's SMS thread stays open this long without a reply
    opt_out_words: str = "STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT"
    opt_in_words: str = "START, UNSTOP"

    def words(self, which: str) -> frozenset[str]:
        raw = self.opt_out_words if which == "out" else self.opt_in_words
        return frozenset(w.strip().upper() for w in raw.split(",") if w.strip())


@dataclass(frozen=True)
class DemoSettings:
    crm: bool = True  # serve the demo customer system at /demo/crm


@dataclass(frozen=True)
class SipSettings:
    enabled: bool = True  # answer phone calls
    host: str = "127.0.0.1"  # address SIP and RTP bind to (0.0.0.0: every interface)
    port: int = 5060  # the SIP address callers and trunks use (UDP, and TCP when enabled)
    transports: str = "udp"  # comma list of udp, tcp, tls
    tls_port: int = 5061
    tls_certificate: str = ""  # PEM files, needed when tls is among the transports
    tls_private_key: str = ""
    tls_ca: str = ""
    public_address: str = ""  # advertised in Contact and SDP when behind NAT
    rtp_ports: str = "40000-40999"  # media ports; each call takes two (RTP + RTCP)
    # Offered and accepted, in order of preference. G.722 first: the recognisers' models are
    # 16 kHz wideband, and G.711's 8 kHz audio loses words they would catch.
    codecs: str = "G722, PCMU, PCMA"
    dtmf: str = "rfc4733, info"  # key presses accepted: RFC 4733 events, SIP INFO
    media_workers: int = 1  # processes of 4 calls each; more than 1 puts Kamailio in front
    worker_base_port: int = 0  # >1 worker: their own SIP ports start here (0: port + 10)
    max_call_seconds: int = 3600  # calls are cut after this (a lost BYE must not hold a slot)
    # No RTP (nor RTCP) from a caller for this many seconds: hang up (a dead phone, a lost NAT
    # binding, a lost BYE). Calls on hold are exempt. 0: never (Asterisk's rtptimeout).
    rtp_timeout: float = 30.0
    # Flows list the numbers they answer (`numbers:` in the flow file); a call to any other
    # number goes to this flow (empty: such calls are refused with 404).
    default_flow: str = "bank"
    registrar: str = ""  # sip:pbx.example.com: register there to receive its calls
    username: str = ""  # digest credentials for the registrar
    password: str = ""
    realm: str = "*"
    register_interval: int = 300  # seconds between re-registrations
    # Customer callbacks: the URI an outbound call to a number dials, {number} standing for
    # it (sip:{number}@trunk.example.com). Empty: no outbound calls.
    callback_uri: str = ""

    def worker_ports(self) -> list[int]:
        """SIP ports of the media workers behind Kamailio (when media_workers > 1)."""
        base = self.worker_base_port or self.port + 10
        return [base + index for index in range(self.media_workers)]


@dataclass(frozen=True)
class WebRtcSettings:
    enabled: bool = True  # browser calls from the visitor widget (carried by the media workers)
    max_calls_per_worker: int = 8  # browser calls per media worker, besides its 4 SIP calls
    # Addresses the browser reaches the media workers on (host ICE candidates), comma list.
    # Empty: every interface's address except loopback. 127.0.0.1: a browser on this machine.
    addresses: str = ""
    # STUN/TURN servers for both sides, comma list of stun:/turn: URLs. None by default: on
    # premises no public STUN server is asked.
    ice_servers: str = ""
    turn_username: str = ""  # credentials for the turn: servers
    turn_credential: str = ""

    def address_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.addresses.split(",") if a.strip())

    def ice_server_list(self) -> list[dict[str, object]]:
        """As RTCIceServer dictionaries, for the browser and for aiortc alike."""
        servers: list[dict[str, object]] = []
        for url in (u.strip() for u in self.ice_servers.split(",")):
            if not url:
                continue
            server: dict[str, object] = {"urls": [url]}
            if url.lower().startswith("turn") and self.turn_username:
                server["username"] = self.turn_username
                server["credential"] = self.turn_credential
            servers.append(server)
        return servers


@dataclass(frozen=True)
class SpeechSettings:
    asr: str = "en=pocketsphinx"  # language=engine: pocketsphinx, or vosk:<model dir|package>
    asr_workers: int = 1  # speech recognition processes (PocketSphinx: ~40 grammar streams each)
    end_silence: float = 0.3  # seconds of trailing silence that end an utterance (per step too)
    # ...and once the answer so far is a whole phrase of a closed grammar that no longer phrase
    # continues ("yes" to a yes/no question, a menu label): VoiceXML's completetimeout.
    complete_silence: float = 0.15
    tts_voices: str = ""  # language=espeak-ng voice, e.g. "en=en-us, ko=ko" (default: language)
    tts_rate: int = 170  # words per minute
    cache_dir: str = "data/prompt-cache"  # rendered prompts, keyed by text, language and voice


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"


@dataclass(frozen=True)
class Settings:
    http: HttpSettings = field(default_factory=HttpSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    flows: FlowsSettings = field(default_factory=FlowsSettings)
    nlu: NluSettings = field(default_factory=NluSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    webrtc: WebRtcSettings = field(default_factory=WebRtcSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    log: LogSettings = field(default_factory=LogSettings)
    # Values flows may read as env.NAME (customer-system URLs): free-form, names kept as written.
    flow_env: Mapping[str, str] = field(default_factory=dict)
    source: str = "<defaults>"

    @property
    def public_url(self) -> str:
        return self.http.public_url.rstrip("/") or f"http://{self.http.host}:{self.http.port}"

    def flow_env_with_defaults(self) -> dict[str, str]:
        """flow_env, with CRM_URL pointing at the built-in demo CRM when not configured."""
        env = dict(self.flow_env)
        if self.demo.crm:
            env.setdefault("CRM_URL", f"{self.public_url}/demo/crm")
        return env


SECTIONS: dict[str, type] = {
    name: kind
    for name, kind in get_type_hints(Settings).items()
    if name not in ("flow_env", "source")
}
FREE_SECTION = "flow_env"
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _convert(raw: str, kind: Any, where: str) -> Any:
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        expected = {bool: "yes or no", int: "an integer", float: "a number"}[kind]
        raise ConfigError(f"{where}: expected {expected}, got {raw!r}") from None
    return text


def _line_of(path: Path, section: str, key: str | None) -> int:
    """Where `key` of `[section]` (or the section itself) is written: configparser does not
    keep line numbers."""
    current = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip().lower()
            if key is None and current == section:
                return number
        elif key and current == section and re.match(rf"\s*{re.escape(key)}\s*[=:]", line, re.I):
            return number
    return 1


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, tuple[str, str]]] = {}  # section -> key -> (raw, where)
    flow_env: dict[str, str] = {}
    source = "<defaults>"
    if path is not None:
        file = Path(path)
        source = str(file)
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep flow_env names
        try:
            parser.read_string(file.read_text(encoding="utf-8"), source=str(file))
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{file}: cannot read the config file: {reason}") from None
        except configparser.Error as exc:
            raise ConfigError(f"{file}:{_syntax_problem(exc)}") from None
        for section in parser.sections():
            name = section.strip().lower()
            if name == FREE_SECTION:
                flow_env.update(parser[section])
                continue
            if name not in SECTIONS:
                hint = difflib.get_close_matches(name, [*SECTIONS, FREE_SECTION], n=1)
                raise ConfigError(
                    f"{file}:{_line_of(file, name, None)}: unknown section [{section}]"
                    + (f" (did you mean [{hint[0]}]?)" if hint else "")
                )
            for key, raw in parser[section].items():
                where = f"{file}:{_line_of(file, name, key)}: [{name}] {key}"
                values.setdefault(name, {})[key.lower()] = (raw, where)
    for var, raw in environ.items():
        if not var.startswith("IVR_"):
            continue
        rest = var[4:]
        if rest.upper().startswith("FLOW_ENV_"):
            flow_env[rest[len("FLOW_ENV_") :]] = raw
            continue
        for section in sorted(SECTIONS, key=len, reverse=True):
            if rest.lower().startswith(section + "_"):
                values.setdefault(section, {})[rest[len(section) + 1 :].lower()] = (raw, var)
                break
    sections: dict[str, Any] = {}
    for name, kind in SECTIONS.items():
        hints = get_type_hints(kind)
        given = values.get(name, {})
        kwargs: dict[str, Any] = {}
        for key, (raw, where) in given.items():
            if key not in hints:
                hint = difflib.get_close_matches(key, hints, n=1)
                raise ConfigError(
                    f"{where}: unknown key"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; [{name}] has: {', '.join(hints)}"
                )
            kwargs[key] = _convert(raw, hints[key], where)
        sections[name] = kind(**kwargs)
    settings = Settings(**sections, flow_env=flow_env, source=source)
    places = {
        (name, key): where for name, given in values.items() for key, (_, where) in given.items()
    }
    _check(settings, lambda section, key: places.get((section, key), f"[{section}] {key}"))
    return settings


def parse_pairs(text: str) -> dict[str, str]:
    """`"a=1, b=2"` -> {"a": "1", "b": "2"}; malformed parts raise ValueError naming them."""
    pairs: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{part!r} is not name=value")
        pairs[name.strip()] = value.strip()
    return pairs


def port_range(text: str) -> tuple[int, int]:
    """`"40000-40999"` -> (40000, 1000): first port and how many."""
    first, sep, last = text.partition("-")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError:
        raise ValueError(f"{text!r} is not a port range like 40000-40999") from None
    if not 0 < low <= high < 65536:
        raise ValueError(f"{text!r} is not a port range like 40000-40999")
    return low, high - low + 1


def _syntax_problem(exc: configparser.Error) -> str:
    """`line: what` for configparser's errors (which keep the line only in their attributes)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{exc.lineno}: {exc.line.strip()!r} comes before any [section]"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]  # the line as repr() gives it
        with contextlib.suppress(ValueError, SyntaxError):
            line = ast.literal_eval(line)
        return f"{lineno}: cannot read {str(line).strip()!r}: expected key = value, or a [section]"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"{exc.lineno}: [{exc.section}] {exc.option} is given twice"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"{exc.lineno}: [{exc.section}] is given twice"
    return f" {exc.message.splitlines()[0]}"


def _check(settings: Settings, where: Callable[[str, str], str]) -> None:
    """Values of the right type but out of range; `where` names the line or variable."""
    if not 0 < settings.http.port < 65536:
        raise ConfigError(f"{where('http', 'port')}: {settings.http.port} is not a TCP port")
    if settings.nlu.engine not in ("builtin", "rasa"):
        raise ConfigError(
            f"{where('nlu', 'engine')}: expected builtin or rasa, got {settings.nlu.engine!r}"
        )
    _check_sip(settings.sip, where)
    _check_webrtc(settings.webrtc, where)
    _check_speech(settings.speech, where)
    _check_sms(settings.sms, where)
    if settings.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"{where('log', 'level')}: expected debug, info, warning or error, "
            f"got {settings.log.level!r}"
        )


def _check_webrtc(webrtc: WebRtcSettings, where: Callable[[str, str], str]) -> None:
    if webrtc.max_calls_per_worker < 0:
        raise ConfigError(f"{where('webrtc', 'max_calls_per_worker')}: must be 0 or more")
    for address in webrtc.address_list():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"{where('webrtc', 'addresses')}: {address!r} is not an IP address"
            ) from None
    for server in webrtc.ice_server_list():
        url = str(server["urls"][0])  # type: ignore[index]
        try:  # what the media workers' aiortc will accept (lower-case scheme, host[:port])
            from aiortc.rtcicetransport import parse_stun_turn_uri

            parse_stun_turn_uri(url)
        except ImportError:  # no aiortc here: browser calls cannot start anyway
            pass
        except ValueError as exc:
            raise ConfigError(
                f"{where('webrtc', 'ice_servers')}: {url!r} is not a stun: or turn: URL "
                f"like stun:stun.example.com:3478 ({exc})"
            ) from None


def _check_sip(sip: SipSettings, where: Callable[[str, str], str]) -> None:
    for key in ("port", "tls_port"):
        if not 0 < getattr(sip, key) < 65536:
            raise ConfigError(f"{where('sip', key)}: {getattr(sip, key)} is not a port")
    transports = [t.strip().lower() for t in sip.transports.split(",") if t.strip()]
    unknown = [t for t in transports if t not in ("udp", "tcp", "tls")]
    if unknown or not transports:
        raise ConfigError(
            f"{where('sip', 'transports')}: expected a list of udp, tcp, tls, "
            f"got {sip.transports!r}"
        )
    if "tls" in transports and not (sip.tls_certificate and sip.tls_private_key):
        raise ConfigError(
            f"{where('sip', 'transports')}: tls needs tls_certificate and tls_private_key"
        )
    if "tls" in transports and "tcp" in transports and sip.tls_port == sip.port:
        # Both would listen on the same TCP port: the media worker could not start.
        raise ConfigError(
            f"{where('sip', 'tls_port')}: {sip.tls_port} is also [sip] port, where tcp listens; "
            "tls needs a port of its own (usually 5061)"
        )
    try:
        port_range(sip.rtp_ports)
    except ValueError as exc:
        raise ConfigError(f"{where('sip', 'rtp_ports')}: {exc}") from None
    known_codecs = {"PCMU", "PCMA", "G722", "GSM", "ILBC", "SPEEX"}
    codecs = [c.strip().upper() for c in sip.codecs.split(",") if c.strip()]
    bad = [c for c in codecs if c not in known_codecs]
    if bad or not codecs:
        raise ConfigError(
            f"{where('sip', 'codecs')}: unknown codec {', '.join(bad) or '(none)'}; "
            f"expected some of {', '.join(sorted(known_codecs))}"
        )
    methods = [m.strip().lower() for m in sip.dtmf.split(",") if m.strip()]
    if not methods or any(m not in ("rfc4733", "info") for m in methods):
        raise ConfigError(f"{where('sip', 'dtmf')}: expected rfc4733 and/or info, got {sip.dtmf!r}")
    if not 1 <= sip.media_workers <= 64:
        raise ConfigError(f"{where('sip', 'media_workers')}: expected 1 to 64")
    if sip.media_workers > 1:
        check_workers_behind_kamailio(sip, where)
    if sip.registrar and not sip.registrar.startswith(("sip:", "sips:")):
        raise ConfigError(f"{where('sip', 'registrar')}: expected a sip: URI")
    if not 0 <= sip.rtp_timeout <= 86400:
        raise ConfigError(f"{where('sip', 'rtp_timeout')}: expected 0 (never) to 86400 seconds")
    uri = sip.callback_uri
    if uri and not (uri.lower().startswith(("sip:", "sips:")) and "{number}" in uri):
        raise ConfigError(
            f"{where('sip', 'callback_uri')}: expected a sip: or sips: URI with {{number}} where "
            f"the number goes, like sip:{{number}}@trunk.example.com; got {uri!r}"
        )


def check_workers_behind_kamailio(
    sip: SipSettings, where: Callable[[str, str], str] = lambda s, k: f"[{s}] {k}"
) -> None:
    """Several media workers sit behind Kamailio on ports of their own (also checked by the
    runtime: settings made in code skip `load_settings`)."""
    transports = [t.strip().lower() for t in sip.transports.split(",") if t.strip()]
    if sip.worker_base_port and not 0 < sip.worker_base_port < 65536:
        raise ConfigError(
            f"{where('sip', 'worker_base_port')}: {sip.worker_base_port} is not a port"
        )
    ports = sip.worker_ports()
    if ports[-1] >= 65536:
        raise ConfigError(
            f"{where('sip', 'worker_base_port')}: {sip.media_workers} workers from port "
            f"{ports[0]} run past 65535"
        )
    public = {sip.port} | ({sip.tls_port} if "tls" in transports else set())
    if clash := sorted(public & set(ports)):
        raise ConfigError(
            f"{where('sip', 'worker_base_port')}: the workers' ports {ports[0]}-{ports[-1]} "
            f"include {clash[0]}, the public SIP port"
        )
    _, count = port_range(sip.rtp_ports)
    if count // sip.media_workers < 8:
        raise ConfigError(
            f"{where('sip', 'rtp_ports')}: {count} ports cannot be shared by "
            f"{sip.media_workers} media workers (each needs at least 8: 4 calls, RTP + RTCP)"
        )
    if "tls" in transports:
        raise ConfigError(
            f"{where('sip', 'transports')}: tls with several media workers is not supported "
            "(Kamailio would need its TLS module, a separate Debian package); use udp and tcp, "
            "or media_workers = 1"
        )
    if sip.registrar:
        raise ConfigError(
            f"{where('sip', 'registrar')}: registering needs media_workers = 1 (each worker "
            "would register its own address, and the PBX would bypass Kamailio); with several "
            "workers, have the PBX or trunk send calls to [sip] host:port"
        )


def _check_speech(speech: SpeechSettings, where: Callable[[str, str], str]) -> None:
    for key in ("asr", "tts_voices"):
        try:
            parse_pairs(getattr(speech, key))
        except ValueError as exc:
            raise ConfigError(f"{where('speech', key)}: {exc}") from None
    for language, engine in parse_pairs(speech.asr).items():
        if engine != "pocketsphinx" and not engine.startswith("vosk:"):
            raise ConfigError(
                f"{where('speech', 'asr')}: {language}={engine}: expected pocketsphinx "
                "or vosk:<model directory or package>"
            )
    if not 1 <= speech.asr_workers <= 32:
        raise ConfigError(f"{where('speech', 'asr_workers')}: expected 1 to 32")
    if not 0.05 <= speech.end_silence <= 5:
        raise ConfigError(f"{where('speech', 'end_silence')}: expected 0.05 to 5 seconds")
    if not 0.05 <= speech.complete_silence <= 5:
        raise ConfigError(f"{where('speech', 'complete_silence')}: expected 0.05 to 5 seconds")


def _check_sms(sms: SmsSettings, where: Callable[[str, str], str]) -> None:
    if sms.gateway not in ("outbox", "kannel", "webhook"):
        raise ConfigError(
            f"{where('sms', 'gateway')}: expected outbox, kannel or webhook, got {sms.gateway!r}"
        )
    if sms.gateway == "webhook" and not sms.webhook_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where('sms', 'webhook_url')}: the webhook gateway needs an URL")
    if sms.gateway == "kannel" and not sms.kannel_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where('sms', 'kannel_url')}: expected an http(s) URL")
    if sms.max_attempts < 1:
        raise ConfigError(f"{where('sms', 'max_attempts')}: at least 1")
    if not 0 < sms.retry_seconds <= sms.max_retry_seconds:
        raise ConfigError(
            f"{where('sms', 'retry_seconds')}: must be above 0 and at most max_retry_seconds"
        )
    if not 70 <= sms.max_text_chars <= 10000:
        raise ConfigError(f"{where('sms', 'max_text_chars')}: between 70 and 10000")
