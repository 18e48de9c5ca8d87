"""What a device sent, made safe for the operator's terminal: escaped, never drawn, and no
number that crashes the table."""

from __future__ import annotations

import json

import pytest

from hub.terminal import OVERFLOW_MARK, count, megabytes, printable, printable_json

HOSTILE = ["\x1b[2J\x1b[31mFAKE", "ok\ncam-99  stable", "\x9b31m", "evil\u202etxt",
           "zero\u200bwidth", "back\rspace\x08", "nul\x00", "del\x7f", "sep\u2028line",
           "tab\there", "\U000e0041"]


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_every_character_a_terminal_would_act_on_is_written_as_an_escape(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    assert shown.encode().decode("unicode_escape") == text  # nothing lost: it reads back


def test_escapes_are_spelled_as_python_spells_them_and_a_backslash_cannot_forge_one() -> None:
    assert (printable("\x1b[0m\x9b\u202e\u200b\U000e0041")
            == "\\x1b[0m\\x9b\\u202e\\u200b\\U000e0041")
    assert printable("\\x1b") == "\\\\x1b"  # sent as text: visibly not an escape code
    assert printable("a" * 200, 10) == "a" * 7 + "..."


def test_json_keeps_its_value_and_loses_its_controls() -> None:
    value = {"last_error": "".join(HOSTILE), "dropped": {"\u202ekey": 1}}
    text = printable_json(json.dumps(value, ensure_ascii=False))
    assert text.isprintable()
    assert json.loads(text) == value


def test_numbers_too_wide_for_a_counter_show_a_mark_instead_of_crashing() -> None:
    huge = 10**5000  # str() of it raises ValueError (Python's int digit limit)
    assert (count(huge), megabytes(huge)) == (OVERFLOW_MARK, OVERFLOW_MARK)
    assert (count(2**64 - 1), count(0), megabytes(3_000_000)) == (str(2**64 - 1), "0", "3.0")
    assert megabytes(float("inf")) == OVERFLOW_MARK
