"""The flow validator: every mistake an ops person can make is reported at `file:line:col`.

Each test writes a small flow (with a tiny prompts and intents file) into tmp_path, validates
it, and checks the place and the key words of the message. Positions are found in the YAML text
itself (`pos(text, "needle")`): the line and column of the needle's first character.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.flow.problems import Problem, errors_in
from ivr.flow.validator import is_prompt_id, validate

ROOT = Path(__file__).resolve().parents[1]

PROMPTS = """\
language: en
prompts:
  welcome: "Welcome."
  ask_code: "Please key in your code."
  greet_code: "Your code is {{ slots.code }}."
"""

INTENTS = """\
language: en
intents:
  check_balance:
    examples: [check my balance, balance please]
  talk_to_agent:
    examples: [agent, talk to a person]
"""

# A valid flow the tests start from (and the baseline test proves clean).
BASE = """\
flow: demo
start: hello
steps:
  hello:
    say: welcome
    next: code
  code:
    ask:
      prompt: ask_code
      slot: code
      type: digits
    next: bye
  bye:
    end: "Goodbye."
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def check(
    tmp_path: Path,
    flow: str,
    *,
    env_keys: tuple[str, ...] | None = ("CRM_URL",),
    prompts: str = PROMPTS,
    intents: str = INTENTS,
) -> tuple[Path, list[Problem]]:
    """Write the flow (as flow.yaml) with the prompts and intents files; validate the folder."""
    write(tmp_path, "prompts.yaml", prompts)
    write(tmp_path, "intents.yaml", intents)
    path = write(tmp_path, "flow.yaml", flow)
    _, problems = validate([tmp_path], env_keys)
    return path, problems


def pos(text: str, needle: str) -> tuple[int, int]:
    """1-based (line, col) of the only occurrence of `needle` in `text`."""
    text = textwrap.dedent(text)
    assert text.count(needle) == 1, f"{needle!r} must occur once in the flow"
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def only(problems: list[Problem], *words: str) -> Problem:
    """The one problem whose message contains every word."""
    found = [p for p in problems if all(w in p.message for w in words)]
    assert len(found) == 1, f"expected one problem with {words}, got: {[str(p) for p in problems]}"
    return found[0]


def at(problem: Problem, path: Path, line_col: tuple[int, int]) -> None:
    assert (problem.file, problem.line, problem.col) == (str(path), *line_col), str(problem)


def test_base_flow_is_clean(tmp_path: Path) -> None:
    _, problems = check(tmp_path, BASE)
    assert problems == []


# ---------------------------------------------------------------- YAML and shape


def test_yaml_syntax_error_is_reported_at_the_offending_character(tmp_path: Path) -> None:
    flow = BASE.replace("say: welcome", "say: welcome: friend")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "YAML syntax error", "mapping values are not allowed")
    line, col = pos(flow, "welcome: friend")
    at(problem, path, (line, col + len("welcome")))
    assert problems == [problem]  # nothing else is guessed from a file that does not parse


def test_unclosed_quote_is_a_yaml_syntax_error(tmp_path: Path) -> None:
    flow = BASE.replace('end: "Goodbye."', 'end: "Goodbye.')
    path, problems = check(tmp_path, flow)
    problem = only(problems, "YAML syntax error")
    assert problem.file == str(path)
    assert problem.line >= pos(flow, '"Goodbye.')[0]


def test_unknown_field_is_reported_at_the_key_with_did_you_mean(tmp_path: Path) -> None:
    flow = BASE.replace("    next: code", "    nxt: code").replace(
        "prompt: ask_code", "promt: ask_code"
    )
    path, problems = check(tmp_path, flow)
    at(only(problems, "unknown field 'nxt'", "(did you mean 'next'?)"), path, pos(flow, "nxt:"))
    at(
        only(problems, "unknown field 'promt'", "(did you mean 'prompt'?)"),
        path,
        pos(flow, "promt:"),
    )


def test_unknown_field_without_a_close_match_lists_the_allowed_fields(tmp_path: Path) -> None:
    flow = BASE.replace("    say: welcome\n", "    say: welcome\n    colour: blue\n")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "unknown field 'colour'")
    at(problem, path, pos(flow, "colour:"))
    assert "expected one of: barge_in, description, next, say" in problem.message
    assert problems == [problem]


def test_unknown_top_level_field_has_a_hint(tmp_path: Path) -> None:
    flow = BASE.replace("start: hello", "start: hello\nlanguge: en")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "unknown field 'languge'", "did you mean 'language'?")
    at(problem, path, pos(flow, "languge"))


def test_wrong_type_is_reported_at_the_value(tmp_path: Path) -> None:
    flow = BASE.replace("type: digits", "type: digits\n      retries: many\n      length: 0")
    path, problems = check(tmp_path, flow)
    at(only(problems, "ask.retries", "valid integer"), path, pos(flow, "many"))
    at(only(problems, "ask.length", "greater than or equal to 1"), path, pos(flow, "0\n"))
    assert len(problems) == 2


def test_wrong_choice_names_the_allowed_values(tmp_path: Path) -> None:
    flow = BASE.replace("type: digits", "type: integer")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "ask.type", "'digits'", "'yes_no'")
    at(problem, path, pos(flow, "integer"))


def test_missing_required_field_names_the_field_and_where(tmp_path: Path) -> None:
    flow = BASE.replace("      slot: code\n", "").replace("    next: code\n", "")
    path, problems = check(tmp_path, flow)
    # Reported on the mapping that lacks it: the ask action, and the 'hello' step.
    at(only(problems, "missing required field 'slot' in ask"), path, pos(flow, "prompt: ask_code"))
    at(only(problems, "missing required field 'next'"), path, pos(flow, "say: welcome"))
    # with 'next' gone, nothing leads from 'hello' to the rest: said so, and nothing else
    rest = sorted(p.message for p in problems if "missing" not in p.message)
    assert rest == [
        "unreachable step 'bye': no step leads to it",
        "unreachable step 'code': no step leads to it",
    ]


def test_flow_without_steps_is_reported(tmp_path: Path) -> None:
    path, problems = check(tmp_path, "flow: demo\nstart: hello\n")
    problem = only(problems, "missing required field 'steps'")
    assert problem.file == str(path)


def test_step_with_no_action_is_reported_with_a_hint(tmp_path: Path) -> None:
    flow = BASE.replace("say: welcome", "sya: welcome")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "step 'hello' has no action", "(did you mean 'say'?)")
    at(problem, path, pos(flow, "hello:"))
    assert problems == [problem]


def test_step_with_two_actions_is_reported_at_the_second_action(tmp_path: Path) -> None:
    flow = BASE.replace('    end: "Goodbye."', '    say: "Bye."\n    end: "Goodbye."')
    path, problems = check(tmp_path, flow)
    problem = only(problems, "step 'bye' has 2 actions (say, end)", "split it")
    at(problem, path, pos(flow, "end:"))
    assert problems == [problem]


# ---------------------------------------------------------------- references to steps

UNKNOWN_STEP_CASES = {
    "next": (
        BASE.replace("    next: bye", "    next: byee"),
        "byee",
        "unknown step 'byee' (did you mean 'bye'?)",
    ),
    "on_failure": (
        BASE.replace("    next: bye", "    next: bye\n    on_failure: nowhere"),
        "nowhere",
        "unknown step 'nowhere'",
    ),
    "start": (
        BASE.replace("start: hello", "start: helo"),
        "helo",
        "unknown step 'helo' (did you mean 'hello'?)",
    ),
    "defaults.on_failure": (
        BASE.replace("start: hello", "start: hello\ndefaults:\n  on_failure: by"),
        "by\n",
        "unknown step 'by' (did you mean 'bye'?)",
    ),
    "defaults.on_error": (
        BASE.replace("start: hello", "start: hello\ndefaults:\n  on_error: sorry"),
        "sorry",
        "unknown step 'sorry'",
    ),
    "goto": (
        BASE.replace('    end: "Goodbye."', "    goto: hallo"),
        "hallo",
        "unknown step 'hallo' (did you mean 'hello'?)",
    ),
    "goto flow step": (
        BASE.replace('    end: "Goodbye."', "    goto: {flow: demo, step: hallo}"),
        "hallo",
        "unknown step 'hallo' in flow 'demo'",
    ),
    "menu option next": (
        BASE.replace(
            "  hello:\n    say: welcome\n    next: code\n",
            "  hello:\n    menu:\n      prompt: welcome\n      options:\n"
            "        - {key: '1', next: code}\n        - {key: '2', next: cod}\n",
        ),
        "cod}",
        "unknown step 'cod' (did you mean 'code'?)",
    ),
    "branch case next": (
        BASE.replace(
            "  hello:\n    say: welcome\n",
            "  hello:\n    branch:\n      - when: slots.code\n        next: by\n",
        ),
        "by\n",
        "unknown step 'by' (did you mean 'bye'?)",
    ),
    "escalate resume": (
        BASE.replace('    end: "Goodbye."', "    escalate: {channel: sms, resume: cde}"),
        "cde",
        "unknown step 'cde'",
    ),
}


@pytest.mark.parametrize("case", list(UNKNOWN_STEP_CASES))
def test_unknown_step_is_reported_at_the_reference(tmp_path: Path, case: str) -> None:
    flow, needle, message = UNKNOWN_STEP_CASES[case]
    path, problems = check(tmp_path, flow)
    at(only(problems, message), path, pos(flow, needle))
    assert [p for p in problems if "unknown step" in p.message] == [only(problems, message)]


def test_unreachable_step_is_reported_at_its_id(tmp_path: Path) -> None:
    flow = BASE + "  orphan:\n    say: welcome\n    next: bye\n"
    path, problems = check(tmp_path, flow)
    problem = only(problems, "unreachable step 'orphan'", "no step leads to it")
    at(problem, path, pos(flow, "orphan:"))
    assert problems == [problem]


def test_steps_reached_by_defaults_menus_branches_and_other_flows_are_reachable(
    tmp_path: Path,
) -> None:
    flow = """\
    flow: demo
    start: menu
    defaults: {on_failure: failed, on_error: broken}
    steps:
      menu:
        menu:
          prompt: welcome
          options:
            - {key: "1", next: by_menu}
      by_menu:
        branch:
          - {when: "intent == 'x'", next: by_branch}
        next: bye
      by_branch:
        escalate: {channel: chat, resume: by_resume}
      by_resume:
        say: welcome
        next: bye
      failed:
        say: welcome
        next: bye
      broken:
        say: welcome
        next: bye
      from_other_flow:
        say: welcome
        next: bye
      bye:
        end: true
    """
    write(
        tmp_path,
        "other.yaml",
        "flow: other\nstart: go\nsteps:\n  go:\n    goto: {flow: demo, step: from_other_flow}\n",
    )
    _, problems = check(tmp_path, flow)
    assert problems == []


# ---------------------------------------------------------------- prompts and intents


def test_missing_prompt_id_is_reported_with_hint(tmp_path: Path) -> None:
    flow = BASE.replace("say: welcome", "say: welcom").replace(
        "type: digits", "type: digits\n      no_match: bad_code"
    )
    path, problems = check(tmp_path, flow)
    at(
        only(
            problems, "unknown prompt 'welcom'", "'en' prompt catalogue", "did you mean 'welcome'"
        ),
        path,
        pos(flow, "welcom\n"),
    )
    at(only(problems, "unknown prompt 'bad_code'"), path, pos(flow, "bad_code"))
    assert len(problems) == 2


@pytest.mark.parametrize(
    "text", ["Hello there", "Goodbye", "goodbye!", "Call 0800 123 456.", "Hi, {{ slots.code }}"]
)
def test_literal_text_is_not_a_prompt_id(tmp_path: Path, text: str) -> None:
    assert not is_prompt_id(text)
    flow = BASE.replace('end: "Goodbye."', f"end: {text!r}")
    _, problems = check(tmp_path, flow)
    assert problems == []


def test_prompt_ids_are_looked_up_in_the_flows_language(tmp_path: Path) -> None:
    flow = BASE.replace("start: hello", "language: fr\nstart: hello")
    path, problems = check(tmp_path, flow)
    at(
        only(problems, "unknown prompt 'welcome'", "'fr' prompt catalogue"),
        path,
        pos(flow, "welcome"),
    )


def test_template_inside_a_catalogue_prompt_is_checked_where_the_prompt_is_used(
    tmp_path: Path,
) -> None:
    flow = BASE.replace("say: welcome", "say: greet_code")
    path, problems = check(tmp_path, flow.replace("slot: code", "slot: pin"))
    # greet_code says {{ slots.code }}, and no step collects 'code' any more
    at(only(problems, "unknown slot 'code'"), path, pos(flow, "greet_code"))


MENU = BASE.replace(
    "  hello:\n    say: welcome\n    next: code\n",
    "  hello:\n    menu:\n      prompt: welcome\n      options:\n"
    "        - {intent: check_balance, key: '1', next: code}\n"
    "        - {intent: talk_to_agnt, key: '2', next: bye}\n",
)


def test_unknown_intent_in_a_menu_is_reported_with_hint(tmp_path: Path) -> None:
    path, problems = check(tmp_path, MENU)
    problem = only(problems, "unknown intent 'talk_to_agnt'", "did you mean 'talk_to_agent'")
    at(problem, path, pos(MENU, "talk_to_agnt"))
    assert problems == [problem]


def test_menu_intent_in_a_language_without_intents_names_the_language(tmp_path: Path) -> None:
    flow = MENU.replace("start: hello", "language: de\nstart: hello").replace(
        "prompt: welcome", "prompt: 'Willkommen.'"
    )
    flow = flow.replace("prompt: ask_code", "prompt: 'Ihr Code?'")
    path, problems = check(tmp_path, flow)
    at(
        only(problems, "unknown intent 'check_balance' for language 'de'"),
        path,
        pos(flow, "check_balance"),
    )


# ---------------------------------------------------------------- templates and expressions


def test_bad_template_syntax_is_reported(tmp_path: Path) -> None:
    flow = BASE.replace('end: "Goodbye."', 'end: "Bye {{ slots.code "')
    path, problems = check(tmp_path, flow)
    problem = only(problems, "bad template")
    at(problem, path, pos(flow, '"Bye'))
    assert problems == [problem]


def test_bad_template_syntax_in_a_catalogue_prompt_is_reported(tmp_path: Path) -> None:
    prompts = PROMPTS + '  broken: "Hello {% if slots.code %}"\n'
    flow = BASE.replace("say: welcome", "say: broken")
    path, problems = check(tmp_path, flow, prompts=prompts)
    at(only(problems, "bad template"), path, pos(flow, "broken"))


EXPRESSIONS = """\
flow: demo
start: compute
steps:
  compute:
    set:
      total: "slots.code +"
    next: decide
  decide:
    branch:
      - when: "slots.code >"
        next: agent
    next: agent
  agent:
    transfer:
      queue: cards
      priority: "10 if customer.vip else"
"""


def test_bad_expression_syntax_is_reported_in_branch_set_and_transfer_priority(
    tmp_path: Path,
) -> None:
    path, problems = check(tmp_path, EXPRESSIONS)
    bad = [p for p in problems if "bad expression" in p.message]
    assert [(p.line, p.col) for p in bad] == [
        pos(EXPRESSIONS, '"slots.code +"'),
        pos(EXPRESSIONS, '"slots.code >"'),
        pos(EXPRESSIONS, '"10 if'),
    ]
    assert all(p.file == str(path) for p in bad)


def test_unknown_template_name_is_reported_with_hint(tmp_path: Path) -> None:
    flow = BASE.replace('end: "Goodbye."', 'end: "Your code: {{ slot.code }}"')
    path, problems = check(tmp_path, flow)
    problem = only(problems, "unknown name 'slot' in template", "(did you mean 'slots'?)")
    assert "known: slots, customer, lookups" in problem.message
    at(problem, path, pos(flow, '"Your code'))
    assert problems == [problem]


LOOKUP = BASE.replace(
    "    next: bye\n  bye:",
    "    next: fetch\n  fetch:\n    http:\n"
    "      url: '{{ env.CRM_URL }}/accounts/{{ slots.code }}'\n"
    "      as: account\n    next: bye\n    on_error: bye\n  bye:",
)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ slots.cod }}", "unknown slot 'cod' (did you mean 'code'?)"),
        ("{{ lookups.acount.balance }}", "unknown lookup 'acount' (did you mean 'account'?)"),
        ("{{ env.CRM_ULR }}", "unknown env value ([flow_env] in the config) 'CRM_ULR'"),
        ("{{ conversation.chanel }}", "unknown conversation field 'chanel' (did you mean"),
        ("{{ secrets.pn }}", "a secure answer (secrets) may be sent to a lookup but never said"),
    ],
)
def test_unknown_slot_lookup_or_env_value_is_reported_with_hint(
    tmp_path: Path, template: str, message: str
) -> None:
    flow = LOOKUP.replace('end: "Goodbye."', f'end: "Done {template}"')
    path, problems = check(tmp_path, flow)
    at(only(problems, message), path, pos(flow, '"Done'))
    assert len(problems) == 1


def test_env_hint_and_unchecked_env_without_known_keys(tmp_path: Path) -> None:
    flow = LOOKUP.replace('end: "Goodbye."', 'end: "Done {{ env.CRM_ULR }}"')
    _, problems = check(tmp_path, flow)
    only(problems, "'CRM_ULR'", "(did you mean 'CRM_URL'?)")
    # Without the config's [flow_env] keys, env values cannot be checked (and are not).
    _, problems = check(tmp_path, flow, env_keys=None)
    assert problems == []


SECURE = """\
flow: demo
start: pin
steps:
  pin:
    ask: {prompt: "Your PIN?", slot: pin, type: digits, secure: true}
    next: check
  check:
    http:
      url: "{{ env.CRM_URL }}/check"
      method: POST
      body: {pin: "{{ secrets.pin }}", nested: ["{{ secrets.pin }}"]}
      as: result
    next: bye
    on_error: bye
  bye:
    end: "Thank you."
"""


def test_secrets_may_be_sent_in_an_http_body(tmp_path: Path) -> None:
    _, problems = check(tmp_path, SECURE)
    assert problems == []


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        (
            'end: "PIN: {{ secrets.pin }}."',
            '"PIN:',
            "may be sent to a lookup but never said",
        ),
        ('end: "PIN: {{ slots.pin }}."', '"PIN:', "'pin' is a secure answer"),
    ],
)
def test_secrets_used_in_spoken_text_are_refused(
    tmp_path: Path, change: str, needle: str, message: str
) -> None:
    flow = SECURE.replace('end: "Thank you."', change)
    path, problems = check(tmp_path, flow)
    at(only(problems, message), path, pos(flow, needle))
    assert len(problems) == 1


def test_secrets_in_a_set_expression_are_refused(tmp_path: Path) -> None:
    flow = SECURE.replace(
        "  bye:\n", "  keep:\n    set: {copy: secrets.pin}\n    next: bye\n  bye:\n"
    ).replace("    next: bye\n    on_error: bye\n", "    next: keep\n    on_error: bye\n")
    path, problems = check(tmp_path, flow)
    at(only(problems, "never said or stored"), path, pos(flow, "secrets.pin}"))


# ---------------------------------------------------------------- duplicate ids


def test_duplicate_step_id_in_one_file_is_reported_at_the_second(tmp_path: Path) -> None:
    flow = BASE + "  code:\n    say: welcome\n    next: bye\n"
    path, problems = check(tmp_path, flow)
    problem = only(problems, "duplicate id 'code'", "defined twice")
    second = textwrap.dedent(flow).split("\n").index("  code:", 8) + 1
    at(problem, path, (second, 3))


def test_same_flow_name_in_two_files_is_reported_in_the_second(tmp_path: Path) -> None:
    second = write(tmp_path, "zz_copy.yaml", BASE.replace("Goodbye.", "Bye."))
    first, problems = check(tmp_path, BASE)
    problem = only(problems, "duplicate id: flow 'demo' is also defined in", str(first))
    at(problem, second, (1, 7))


def test_same_intent_in_two_files_is_reported_in_the_second(tmp_path: Path) -> None:
    more = write(
        tmp_path,
        "more_intents.yaml",
        "language: en\nintents:\n  check_balance:\n    examples: [balance]\n",
    )
    _, problems = check(tmp_path, BASE)
    problem = only(problems, "duplicate id: intent 'check_balance' is also defined at")
    assert problem.message.endswith(f"{tmp_path / 'intents.yaml'}:3")
    at(problem, more, (3, 3))


def test_same_prompt_id_twice_is_reported(tmp_path: Path) -> None:
    other = write(tmp_path, "prompts_more.yaml", 'language: en\nprompts:\n  welcome: "Hi!"\n')
    _, problems = check(tmp_path, BASE)
    problem = only(problems, "duplicate id: prompt 'welcome' (en) is also defined at")
    assert problem.message.endswith(f"{tmp_path / 'prompts.yaml'}:3")
    at(problem, other, (3, 3))


def test_same_prompt_id_twice_in_one_file_is_reported(tmp_path: Path) -> None:
    prompts = PROMPTS + '  welcome: "Hello again."\n'
    _, problems = check(tmp_path, BASE, prompts=prompts)
    problem = only(problems, "duplicate id 'welcome'")
    at(problem, tmp_path / "prompts.yaml", (len(prompts.splitlines()), 3))


def test_duplicate_menu_keys_and_intents_are_reported(tmp_path: Path) -> None:
    flow = MENU.replace("talk_to_agnt, key: '2'", "check_balance, key: '1'")
    _, problems = check(tmp_path, flow)
    key = only(problems, "duplicate id: key '1' is used by option 1 too")
    intent = only(problems, "duplicate id: intent 'check_balance' is used by option 1 too")
    second_option = pos(flow, "check_balance, key: '1', next: bye")[0]
    assert (key.line, intent.line) == (second_option, second_option)
    assert len(problems) == 2


# ---------------------------------------------------------------- lookups, flows, transfers


@pytest.mark.parametrize(
    "step",
    [
        "    http: {url: '{{ env.CRM_URL }}/x', as: x}\n    next: bye\n",
        "    verify:\n      lookup: {url: '{{ env.CRM_URL }}/c', as: customer}\n"
        "      factor: {prompt: ask_code, field: pin}\n    on_success: bye\n    on_failure: bye\n",
    ],
    ids=["http", "verify"],
)
def test_lookup_without_on_error_is_reported(tmp_path: Path, step: str) -> None:
    flow = BASE.replace("    next: bye\n  bye:", "    next: look\n  look:\n" + step + "  bye:")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "step 'look' calls a customer system but has no 'on_error'")
    at(problem, path, pos(flow, "look:"))
    assert problems == [problem]
    # A flow-wide default is enough.
    _, problems = check(
        tmp_path, flow.replace("start: hello", "start: hello\ndefaults: {on_error: bye}")
    )
    assert problems == []


@pytest.mark.parametrize(
    ("action", "needle"),
    [("call: {flow: billing}\n    next: bye", "billing"), ("goto: {flow: billing}", "billing")],
    ids=["call", "goto"],
)
def test_call_or_goto_to_an_unknown_flow_is_reported(
    tmp_path: Path, action: str, needle: str
) -> None:
    flow = BASE.replace("    say: welcome\n    next: code", f"    {action}")
    write(tmp_path, "billing2.yaml", BASE.replace("flow: demo", "flow: biling"))
    path, problems = check(tmp_path, flow)
    problem = only(problems, "unknown flow 'billing' (did you mean 'biling'?)")
    at(problem, path, pos(flow, needle))


def test_goto_into_a_known_flow_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "other.yaml", BASE.replace("flow: demo", "flow: other"))
    flow = BASE.replace('end: "Goodbye."', "goto: {flow: other, step: code}")
    _, problems = check(tmp_path, flow)
    assert problems == []


@pytest.mark.parametrize(
    "transfer", ["{queue: cards, sip: 'sip:agents@pbx.example'}", "{skills: [banking]}"]
)
def test_a_transfer_needs_exactly_one_of_queue_and_sip(tmp_path: Path, transfer: str) -> None:
    flow = BASE.replace('end: "Goodbye."', f"transfer: {transfer}")
    path, problems = check(tmp_path, flow)
    problem = only(problems, "a transfer needs exactly one target: 'queue' or 'sip'")
    at(problem, path, pos(flow, transfer))
    assert problems == [problem]


def test_min_length_greater_than_max_length_is_reported(tmp_path: Path) -> None:
    flow = BASE.replace("type: digits", "type: digits\n      min_length: 8\n      max_length: 4")
    path, problems = check(tmp_path, flow)
    at(only(problems, "min_length is greater than max_length"), path, pos(flow, "8\n"))


# ---------------------------------------------------------------- files


def test_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("flow: caf\xe9\n".encode("latin-1"))
    _, problems = check(tmp_path, BASE)
    problem = only(problems, "not UTF-8 text")
    assert (problem.file, problem.line, problem.col) == (str(bad), 1, 1)
    assert problems == [problem]


def test_file_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    bad = write(tmp_path, "list.yaml", "- say: hello\n- next: bye\n")
    _, problems = check(tmp_path, BASE)
    problem = only(problems, "expected a mapping with 'flow', 'intents' or 'prompts'")
    assert problem.file == str(bad)


def test_file_of_unknown_kind_is_reported(tmp_path: Path) -> None:
    bad = write(tmp_path, "other.yaml", "dialog: demo\nstart: hello\n")
    _, problems = check(tmp_path, BASE)
    problem = only(problems, "not a flow, intents or prompts file")
    assert (problem.file, problem.line) == (str(bad), 1)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    _, problems = validate([tmp_path / "nope.yaml"], [])
    assert [str(p) for p in problems] == [f"{tmp_path / 'nope.yaml'}:1:1: no such file"]


# ---------------------------------------------------------------- no echoes


def test_a_step_that_fails_to_load_is_not_echoed_as_unknown_step(tmp_path: Path) -> None:
    flow = """\
    flow: demo
    start: code
    defaults: {on_failure: code, on_error: code}
    steps:
      code:
        ask:
          prompt: ask_code
          slot: code
          type: hexadecimal
        next: only_from_code
      only_from_code:
        say: welcome
        next: menu
      menu:
        menu:
          prompt: welcome
          options:
            - {key: "1", next: code}
            - {key: "2", next: again}
        on_failure: code
      again:
        goto: code
    """
    write(
        tmp_path,
        "other.yaml",
        "flow: other\nstart: go\nsteps:\n  go:\n    goto: {flow: demo, step: code}\n",
    )
    path, problems = check(tmp_path, flow)
    problem = only(problems, "ask.type")
    at(problem, path, pos(flow, "hexadecimal"))
    # no "unknown step 'code'" from start, defaults, menu, on_failure or the other flow, and
    # 'only_from_code' (reached only through the broken step) is not "unreachable"
    assert problems == [problem]


# ---------------------------------------------------------------- the whole set


def test_example_flows_are_clean() -> None:
    flow_set, problems = validate([ROOT / "dialogs", ROOT / "prompts"], ["CRM_URL"])
    assert [str(p) for p in problems] == []
    assert {"bank", "parcel"} <= set(flow_set.flows)
    assert "check_balance" in flow_set.intents["en"].intents


def test_problems_are_sorted_and_deduplicated(tmp_path: Path) -> None:
    flow = BASE.replace('end: "Goodbye."', 'end: "{{ slot.a }} and {{ slot.b }}"').replace(
        "say: welcome", "say: welcom"
    )
    write(tmp_path, "a_list.yaml", "- 1\n")
    path, problems = check(tmp_path, flow)
    assert problems == sorted(problems)
    assert len(problems) == len(set(problems))
    # two uses of the unknown name 'slot' in one text: one problem, not two
    assert [p.message for p in problems].count(only(problems, "unknown name 'slot'").message) == 1
    assert [p.file for p in problems] == [str(tmp_path / "a_list.yaml"), str(path), str(path)]
    line, col = pos(flow, "welcom\n")
    assert str(problems[1]) == (
        f"{path}:{line}:{col}: unknown prompt 'welcom' "
        "(no such id in the 'en' prompt catalogue) (did you mean 'welcome'?)"
    )
    assert errors_in(problems) == problems
