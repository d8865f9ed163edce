"""The `ivr` command: serve, validate, schema, simulate, test, call, prompts render, nlu, agents.

Every command exits non-zero on bad input with a message that names the place
(`dialogs/bank.yaml:14:5: ...`, `sip.conf:3: [http] port: ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ivr import __version__
from ivr.config import ConfigError, Settings, load_settings
from ivr.flow.problems import FlowError, Severity

if TYPE_CHECKING:
    from ivr.store import AgentRecord, AgentStore

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# ------------------------------------------------------------------ serve


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ivr.store import StoreError
    from ivr.web.app import create_app

    settings = _settings(args)
    _setup_logging(settings.log.level)
    log = logging.getLogger("ivr.serve")
    app = create_app(settings)
    from ivr.web.keys import API_TOKEN

    if not settings.api.token:
        log.warning("no [api] token configured; this run's API token is: %s", app[API_TOKEN])

    def listening(_banner: str) -> None:  # called by run_app once the socket is bound
        log.info(
            "serving on %s (chat: %s/chat, health: %s/healthz)",
            settings.public_url,
            settings.public_url,
            settings.public_url,
        )

    try:
        web.run_app(
            app,
            host=settings.http.host,
            port=settings.http.port,
            print=listening,
            access_log=None,
        )
    except OSError as exc:
        print(
            f"ivr serve: cannot listen on {settings.http.host}:{settings.http.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    except StoreError as exc:  # the store could not be opened: no traceback, just why
        print(f"ivr serve: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


# ------------------------------------------------------------------ validate / schema


def cmd_validate(args: argparse.Namespace) -> int:
    from ivr.flow.validator import validate
    from ivr.simulate import flow_paths

    settings = _settings(args)
    named = [Path(p) for p in args.paths]
    missing = [p for p in named if not p.exists()]
    for path in missing:
        print(f"{path}:1:1: no such file or directory", file=sys.stderr)
    env = settings.flow_env_with_defaults()
    flow_set, problems = validate(flow_paths(settings, named), env_keys=env)
    shown = [p for p in problems if _is_under(Path(p.file), named)]
    for problem in shown:
        print(problem)
    errors = [p for p in shown if p.severity is Severity.ERROR]
    checked = [f for f in flow_set.files if _is_under(Path(f), named)]
    if errors or missing:
        print(f"{len(errors) + len(missing)} error(s) in {len(checked)} file(s)", file=sys.stderr)
        return EXIT_PROBLEMS
    print(
        f"ok: {len(checked)} file(s), flows: {', '.join(sorted(flow_set.flows)) or 'none'}",
        file=sys.stderr,
    )
    return EXIT_OK


def _is_under(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == r.resolve() or resolved.is_relative_to(r.resolve()) for r in roots)


def cmd_schema(args: argparse.Namespace) -> int:
    from ivr.flow.schema import flow_json_schema
    from ivr.routing.model import queues_json_schema

    schema = queues_json_schema() if args.kind == "queues" else flow_json_schema()
    text = json.dumps(schema, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return EXIT_OK


# ------------------------------------------------------------------ simulate / test


def _resolve_flow(settings: Settings, name_or_path: str) -> tuple[str, list[Path]]:
    """A flow given by name, or by file (then that file is loaded too)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        from ivr.flow.loader import parse_yaml

        doc, problems = parse_yaml(path)
        if doc is None:
            raise FlowError(problems)
        name = doc.root.get("flow") if isinstance(doc.root, dict) else None
        if not isinstance(name, str):
            raise FlowError([doc.problem("not a flow file: no 'flow' name")])
        return name, [path]
    return name_or_path, []


def cmd_simulate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging("warning")
    return asyncio.run(_simulate(settings, args.flow, args.script))


async def _simulate(settings: Settings, flow_arg: str, script: str | None) -> int:
    from ivr.channels.simulator import SimulatorChannel
    from ivr.simulate import load_flows, simulation

    flow_name, extra = _resolve_flow(settings, flow_arg)
    flows = load_flows(settings, extra)
    if flow_name not in flows.flows:
        print(
            f"ivr simulate: no flow named {flow_name!r} (known: {', '.join(flows.flows)})",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    if script is not None:
        lines = [
            line.rstrip("\n")
            for line in Path(script).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        feed = iter(lines)

        async def read_line() -> str | None:
            line = next(feed, None)
            if line is not None:
                print(f"caller: {line}")
            return line
    else:
        print(
            "Type what the caller says; dtmf:1234# for keys; (silence) for no answer; "
            "Ctrl-D to hang up.",
            file=sys.stderr,
        )
        loop = asyncio.get_running_loop()

        async def read_line() -> str | None:
            print("> ", end="", flush=True, file=sys.stderr)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            return line.rstrip("\n") if line else None

    async with simulation(settings, flows) as sim:
        outcome = await sim.run(flow_name, SimulatorChannel(read_line, print))
    conv = outcome.conversation
    print(f"[{conv.status}] at step {conv.position.step!r} of flow {conv.position.flow!r}")
    if outcome.stop.reason == "customer left":
        print(
            f"ivr simulate: the script ended while the flow was waiting at step "
            f"{conv.position.step!r}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging("warning")
    return asyncio.run(_test(settings, [Path(p) for p in args.goldens]))


async def _test(settings: Settings, paths: list[Path]) -> int:
    from ivr.flow.loader import yaml_files
    from ivr.golden import load_golden, run_golden
    from ivr.simulate import load_flows, simulation

    flows = load_flows(settings)
    failed = 0
    files = list(yaml_files(paths))
    async with simulation(settings, flows, output=lambda text: None) as sim:
        for path in files:
            golden, problems = load_golden(path)
            if golden is None or problems:
                for problem in problems:
                    print(problem)
                failed += 1
                continue
            result = await run_golden(golden, sim)
            print(f"{'PASS' if result.passed else 'FAIL'} {path}")
            for problem in result.failures:
                print(f"  {problem}")
            failed += not result.passed
    print(f"{len(files) - failed} passed, {failed} failed")
    return EXIT_PROBLEMS if failed else EXIT_OK


# ------------------------------------------------------------------ nlu


def cmd_export_rasa(args: argparse.Namespace) -> int:
    from ivr.simulate import load_flows
    from ivr.speech.nlu.export import export_rasa

    settings = _settings(args)
    flows = load_flows(settings)
    catalog = flows.intents.get(args.language)
    if catalog is None:
        print(
            f"ivr nlu export-rasa: no intents for language {args.language!r} "
            f"(have: {', '.join(flows.intents) or 'none'})",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    for path in export_rasa(catalog, Path(args.out)):
        print(path)
    return EXIT_OK


# ------------------------------------------------------------------ call / prompts


def cmd_call(args: argparse.Namespace) -> int:
    from ivr.softphone.cli import run

    return run(args)


def cmd_prompts_render(args: argparse.Namespace) -> int:
    from ivr.config import parse_pairs
    from ivr.flow.repository import FlowRepository
    from ivr.speech.tts.prerender import prerender
    from ivr.speech.tts.render import Renderer

    settings = _settings(args)
    repo = FlowRepository(
        [Path(settings.flows.dialogs), Path(settings.flows.prompts)],
        settings.flow_env_with_defaults(),
    )
    repo.load()
    flows = repo.require()
    speech = settings.speech
    renderer = Renderer(speech.cache_dir, parse_pairs(speech.tts_voices), speech.tts_rate)
    try:
        report = prerender(flows, Path(settings.flows.prompts), renderer)
    finally:
        renderer.close()
    for failure in report.failed:
        print(f"ivr prompts render: {failure}", file=sys.stderr)
    print(f"prompts in {speech.cache_dir}: {report.summary()}")
    return EXIT_PROBLEMS if report.failed else EXIT_OK


# ------------------------------------------------------------------ agents


class _BadOption(ValueError):
    """A command-line value that cannot be used; the message starts with the option's name."""


# Where each field of an agent comes from on the command line, for error messages.
_AGENT_OPTIONS = {
    "username": "USERNAME",
    "display_name": "--name",
    "password": "password",
    "skills": "--skills",
    "queues": "--queues",
    "capacity": "--calls/--chats",
    "phone": "--phone",
}
_MEDIA = (("voice", "calls"), ("text", "chats"))  # capacity keys and their options


def cmd_agents(args: argparse.Namespace) -> int:
    from ivr.store import AgentExists, AgentInputError, StoreError

    url = _settings(args).store.url
    command = f"ivr agents {args.agents_command}"
    try:
        return args.agents_func(url, args)
    except AgentInputError as exc:
        print(
            f"{command}: {_AGENT_OPTIONS.get(exc.field, exc.field)}: {exc.problem}", file=sys.stderr
        )
        return EXIT_USAGE
    except _BadOption as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgentExists as exc:
        print(
            f"{command}: {exc} (new password: ivr agents passwd {args.username})", file=sys.stderr
        )
        return EXIT_PROBLEMS
    except StoreError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


def _on_agents(url: str, action: Callable[[AgentStore], Awaitable[T]]) -> T:
    from ivr.store import AgentStore, open_store

    async def run() -> T:
        async with open_store(url) as store:
            return await action(AgentStore(store.database))

    return asyncio.run(run())


def _parse_skills(raw: str) -> dict[str, int]:
    from ivr.store.agents import check_skills

    skills: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, _, level = item.partition(":")
        try:
            skills[name.strip()] = int(level)
        except ValueError:
            raise _BadOption(f"--skills: {item!r}: expected SKILL:LEVEL, e.g. cards:8") from None
    return check_skills(skills)


def _read_password(args: argparse.Namespace) -> str:
    """The new password: one line of stdin (scripts), or typed twice (people)."""
    from ivr.store.agents import check_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise _BadOption("password: the two entries differ")
    return check_password(password)


def _agents_add(url: str, args: argparse.Namespace) -> int:
    from ivr.store.agents import check_phone, check_queues, check_username

    # Every option is checked before the password is asked for: no typing it twice in vain.
    username = check_username(args.username)
    skills = _parse_skills(args.skills)
    queues = check_queues([q.strip() for q in args.queues.split(",") if q.strip()])
    capacity = {medium: getattr(args, option) for medium, option in _MEDIA}
    for medium, option in _MEDIA:
        if capacity[medium] < 0:
            raise _BadOption(f"--{option}: must be 0 or more, got {capacity[medium]}")
    phone = check_phone(args.phone)
    password = _read_password(args)
    agent = _on_agents(
        url,
        lambda agents: agents.add(username, args.name, password, skills, queues, capacity, phone),
    )
    print(f"added agent {agent.username} ({agent.display_name})")
    return EXIT_OK


def _skills_text(agent: AgentRecord) -> str:
    return ",".join(f"{name}:{level}" for name, level in agent.skills.items()) or "-"


def _capacity_text(agent: AgentRecord) -> str:
    names = dict(_MEDIA)
    return ",".join(f"{names.get(k, k)}:{v}" for k, v in agent.capacity.items()) or "-"


def _agents_list(url: str, args: argparse.Namespace) -> int:
    found = _on_agents(url, lambda agents: agents.list())
    if not found:
        print("no agents (add one with: ivr agents add USERNAME)", file=sys.stderr)
        return EXIT_OK
    rows = [("USERNAME", "NAME", "SKILLS", "QUEUES", "CAPACITY", "PHONE")] + [
        (
            a.username + (" (disabled)" if a.disabled else ""),
            a.display_name,
            _skills_text(a),
            ",".join(a.queues) or "-",
            _capacity_text(a),
            a.phone or "-",
        )
        for a in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def _agents_remove(url: str, args: argparse.Namespace) -> int:
    if not _on_agents(url, lambda agents: agents.remove(args.username)):
        print(f"ivr agents remove: no agent named {args.username!r}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"removed agent {args.username.lower()} (signed out everywhere)")
    return EXIT_OK


def _agents_passwd(url: str, args: argparse.Namespace) -> int:
    if _on_agents(url, lambda agents: agents.by_username(args.username)) is None:
        print(f"ivr agents passwd: no agent named {args.username!r}", file=sys.stderr)
        return EXIT_PROBLEMS
    password = _read_password(args)
    if not _on_agents(url, lambda agents: agents.set_password(args.username, password)):
        print(f"ivr agents passwd: no agent named {args.username!r}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"new password for agent {args.username.lower()} (signed out everywhere)")
    return EXIT_OK


def _agents_phone(url: str, args: argparse.Namespace) -> int:
    from ivr.store import AgentInputError
    from ivr.store.agents import check_phone

    if (args.uri is None) == (not args.none):
        raise _BadOption("SIP_URI: give the phone's URI (sip:... or sips:...) or --none")
    try:
        uri = None if args.none else check_phone(args.uri)
    except AgentInputError as exc:
        raise _BadOption(f"SIP_URI: {exc.problem}") from None
    if not _on_agents(url, lambda agents: agents.set_phone(args.username, uri)):
        print(f"ivr agents phone: no agent named {args.username!r}", file=sys.stderr)
        return EXIT_PROBLEMS
    name = args.username.lower()
    if uri is None:
        print(f"agent {name} takes calls in the desktop (from its next connection)")
    else:
        print(f"agent {name} takes calls on {uri} (from the desktop's next connection)")
    return EXIT_OK


def _agents_parser(sub: argparse._SubParsersAction, config: argparse.ArgumentParser) -> None:
    agents = sub.add_parser("agents", help="agent accounts for the agent desktop (/agent)")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking twice",
    )

    p = agents_sub.add_parser("add", parents=[config, password], help="create an agent")
    p.add_argument("username", metavar="USERNAME", help="2-64 of a-z 0-9 . _ - (case-insensitive)")
    p.add_argument("--name", default="", help="the name customers and colleagues see")
    p.add_argument(
        "--skills", default="", metavar="SKILL:LEVEL,...", help="proficiencies 1..10: cards:8"
    )
    p.add_argument("--queues", default="", metavar="QUEUE,...", help="queues served: cards,general")
    p.add_argument("--calls", type=int, default=1, metavar="N", help="calls at once (default 1)")
    p.add_argument("--chats", type=int, default=3, metavar="N", help="chats at once (default 3)")
    p.add_argument(
        "--phone",
        metavar="SIP_URI",
        help="their SIP phone (sip:dana@pbx.example): calls they accept are transferred there",
    )
    p.set_defaults(func=cmd_agents, agents_func=_agents_add)

    p = agents_sub.add_parser("list", parents=[config], help="list agents (never passwords)")
    p.set_defaults(func=cmd_agents, agents_func=_agents_list)

    p = agents_sub.add_parser("remove", parents=[config], help="delete an agent, sign them out")
    p.add_argument("username", metavar="USERNAME")
    p.set_defaults(func=cmd_agents, agents_func=_agents_remove)

    p = agents_sub.add_parser(
        "passwd", parents=[config, password], help="set an agent's password, sign them out"
    )
    p.add_argument("username", metavar="USERNAME")
    p.set_defaults(func=cmd_agents, agents_func=_agents_passwd)

    p = agents_sub.add_parser(
        "phone", parents=[config], help="set (or --none: clear) the SIP phone of an agent"
    )
    p.add_argument("username", metavar="USERNAME")
    p.add_argument("uri", nargs="?", metavar="SIP_URI", help="sip:dana@pbx.example")
    p.add_argument("--none", action="store_true", help="no phone: calls come to the desktop")
    p.set_defaults(func=cmd_agents, agents_func=_agents_phone)


# ------------------------------------------------------------------ wiring


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ivr {__version__}")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="INI settings (see sip.conf.example); IVR_<SECTION>_<KEY> overrides",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[config], help="run the server")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "validate",
        parents=[config],
        help="check flows, intents and prompts; file:line:col messages",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of the flow format (for editors)")
    p.add_argument("--output", "-o", metavar="FILE", help="write it to FILE")
    p.add_argument("--kind", choices=["flow", "queues"], default="flow", help="of which files")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("simulate", parents=[config], help="run a flow as a text conversation")
    p.add_argument("flow", metavar="FLOW", help="flow name or flow file")
    p.add_argument(
        "--script", metavar="FILE", help="caller lines from FILE (exit 0 when the flow ends)"
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("test", parents=[config], help="run golden conversations")
    p.add_argument("goldens", nargs="+", metavar="GOLDEN", help="golden files or directories")
    p.set_defaults(func=cmd_test)

    from ivr.softphone.cli import add_arguments as softphone_arguments

    p = sub.add_parser(
        "call",
        help="a test softphone: dial, speak, press keys, record, print the outcome",
        description="Dial a SIP URI and run a call script; `ivr call answer` waits for a call.",
    )
    softphone_arguments(p)
    p.set_defaults(func=cmd_call)

    prompts = sub.add_parser("prompts", help="prompt audio tools")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", required=True, metavar="COMMAND")
    p = prompts_sub.add_parser(
        "render", parents=[config], help="synthesise every prompt of every flow into the cache"
    )
    p.set_defaults(func=cmd_prompts_render)

    nlu = sub.add_parser("nlu", help="intent tools")
    nlu_sub = nlu.add_subparsers(dest="nlu_command", required=True, metavar="COMMAND")
    p = nlu_sub.add_parser(
        "export-rasa", parents=[config], help="write Rasa training data from the intent files"
    )
    p.add_argument("--out", "-o", default="rasa", metavar="DIR", help="output directory")
    p.add_argument("--language", default="en")
    p.set_defaults(func=cmd_export_rasa)

    _agents_parser(sub, config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"ivr {args.command}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except FlowError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_PROBLEMS
    except FileNotFoundError as exc:
        print(f"ivr {args.command}: {exc.filename}: no such file", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
