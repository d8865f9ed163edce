"""Typed answers: the same rules for speech, DTMF keys and typed chat text."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.flow.channel import CustomerInput
from ivr.flow.values import parse_answer


def speech(text: str) -> CustomerInput:
    return CustomerInput(kind="speech", text=text, confidence=0.9)


def keys(digits: str) -> CustomerInput:
    return CustomerInput(kind="dtmf", digits=digits)


def typed(text: str) -> CustomerInput:
    return CustomerInput(kind="text", text=text)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (speech("one two three four"), "1234"),
        (speech("One, Two, Three, Four."), "1234"),
        (speech("my number is four oh seven two"), "4072"),
        (speech("double five six seven"), "5567"),
        (speech("triple nine one"), "9991"),
        (speech("1 2 3 4"), "1234"),
        (speech("for to ate nine"), "4289"),  # what recognisers hear for 4 2 8 9
        (keys("1234#"), "1234"),
        (keys("1234"), "1234"),
        (typed("12 34"), "1234"),
        (typed("12-34"), "1234"),
        (typed(" 1234 "), "1234"),
    ],
)
def test_digits_from_speech_keys_and_text(answer: CustomerInput, expected: str) -> None:
    assert parse_answer(answer, "digits", length=4) == expected


@pytest.mark.parametrize(
    "answer",
    [
        speech("one two three"),  # too short
        speech("one two three four five"),  # too long
        speech("I don't know"),
        speech("one two buckle my shoe"),
        keys("12*4"),
        keys("#"),
        keys(""),
        typed("abcd"),
        typed(""),
        speech("   "),
    ],
)
def test_bad_digits_are_no_answer(answer: CustomerInput) -> None:
    assert parse_answer(answer, "digits", length=4) is None


def test_digits_min_and_max_length() -> None:
    def digits(answer: CustomerInput) -> Any:
        return parse_answer(answer, "digits", min_length=3, max_length=5)

    assert digits(keys("12#")) is None
    assert digits(keys("123#")) == "123"
    assert digits(speech("one two three four five")) == "12345"
    assert digits(typed("123456")) is None


def test_terminator_is_only_the_configured_key() -> None:
    assert parse_answer(keys("1234*"), "digits", terminator="*") == "1234"
    # with no terminator, '#' is not a digit: the entry does not fit
    assert parse_answer(keys("1234#"), "digits", terminator=None) is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (speech("42"), 42),
        (speech("-5"), -5),
        (speech("3.75"), 3.75),
        (typed("1,250"), 1250),
        (speech("twenty one"), 21),
        (speech("one hundred and twenty five"), 125),
        (speech("two thousand three hundred"), 2300),
        (speech("one million two hundred thousand"), 1_200_000),
        (speech("fifteen"), 15),
        (speech("twenty 5"), 25),
        (speech("2.5 thousand"), 2500.0),
        (typed("1,250 thousand"), 1_250_000),
        (keys("150#"), 150),
    ],
)
def test_numbers_from_speech_keys_and_text(answer: CustomerInput, expected: float) -> None:
    value = parse_answer(answer, "number")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "answer",
    [
        speech("lots"),
        speech("twenty something"),
        # several numbers in a row are not one amount: asked again, never summed up
        typed("1.2.3"),
        typed("1 000"),
        speech("10 50"),
    ],
)
def test_bad_numbers_are_no_answer(answer: CustomerInput) -> None:
    assert parse_answer(answer, "number") is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (keys("20240315#"), "2024-03-15"),
        (typed("2024 03 15"), "2024-03-15"),
        (speech("March 15th 2024"), "2024-03-15"),
        (speech("on the 15th of March 2024 please"), "2024-03-15"),
        (typed("2024-03-15"), "2024-03-15"),
    ],
)
def test_dates_from_speech_keys_and_text(answer: CustomerInput, expected: str) -> None:
    assert parse_answer(answer, "date") == expected


def test_keyed_dates_follow_the_steps_format() -> None:
    assert parse_answer(keys("15032024#"), "date", date_format="%d%m%Y") == "2024-03-15"
    assert parse_answer(keys("15032024#"), "date") is None  # not YYYYMMDD


@pytest.mark.parametrize(
    "answer", [keys("20241345#"), keys("2024"), speech("banana"), typed("the day after")]
)
def test_bad_dates_are_no_answer(answer: CustomerInput) -> None:
    assert parse_answer(answer, "date") is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (speech("yes"), True),
        (speech("Yes please."), True),
        (speech("yeah sure"), True),
        (speech("that's correct"), True),
        (speech("no"), False),
        (speech("nope, thanks"), False),
        (speech("No, that's wrong"), False),
        (keys("1"), True),
        (keys("1#"), True),
        (keys("2"), False),
        (typed("OK"), True),
        (typed("n"), False),
    ],
)
def test_yes_no_from_speech_keys_and_text(answer: CustomerInput, expected: bool) -> None:
    assert parse_answer(answer, "yes_no") is expected


@pytest.mark.parametrize(
    "answer", [speech("maybe"), speech("yes no"), keys("3"), typed("what?"), speech("")]
)
def test_unclear_yes_no_is_no_answer(answer: CustomerInput) -> None:
    assert parse_answer(answer, "yes_no") is None


def test_text_is_kept_as_said_without_surrounding_space() -> None:
    assert parse_answer(speech("  I lost my card  "), "text") == "I lost my card"
    assert parse_answer(typed("Hello"), "text") == "Hello"
    assert parse_answer(keys("42#"), "text") == "42"
    assert parse_answer(typed("   "), "text") is None
    assert parse_answer(speech(""), "text") is None


def test_digits_win_over_text_when_both_are_given() -> None:
    both = CustomerInput(kind="dtmf", text="nine nine", digits="1234#")
    assert parse_answer(both, "digits", length=4) == "1234"


def test_unknown_answer_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown answer type 'colour'"):
        parse_answer(speech("red"), "colour")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("네", True),
        ("네 맞아요", True),
        ("예.", True),
        ("아니요", False),
        ("아뇨, 괜찮아요", False),
    ],
)
def test_a_korean_yes_no_is_read_in_korean_words(text: str, expected: bool) -> None:
    assert parse_answer(speech(text), "yes_no", language="ko") is expected


def test_korean_words_are_no_answer_to_an_english_question_and_vice_versa() -> None:
    assert parse_answer(speech("네"), "yes_no") is None
    assert parse_answer(speech("yes"), "yes_no", language="ko") is None


def test_a_yes_no_question_tells_the_recogniser_the_words_of_its_language() -> None:
    from ivr.flow import model as m
    from ivr.flow.steps.ask import input_spec

    action = m.AskAction(prompt="q", slot="ok", type="yes_no")
    assert {"네", "아니요"} <= set(input_spec(action, "ko").hints)
    assert {"yes", "no"} <= set(input_spec(action, "en").hints)
    assert "네" not in input_spec(action, "en").hints


@pytest.mark.parametrize("language", ["en", "ko", "ko-KR", "en-GB", "xx"])
def test_every_phrase_a_recogniser_is_told_to_expect_reads_as_yes_or_no(language: str) -> None:
    from ivr.flow.values import yes_no_hints

    hints = yes_no_hints(language)
    assert hints
    assert all(parse_answer(speech(h), "yes_no", language=language) is not None for h in hints)
    assert ("네" in hints) == language.startswith("ko")
