"""Request body parsers that answer bad input with a 400, never a 500.

Python's ``json`` accepts what later breaks the studio: a lone surrogate (``"\\ud800"``)
cannot be encoded back to UTF-8 when the value is shown again, a NUL (``"\\u0000"``) cannot
be stored by PostgreSQL (text or jsonb), deeply nested arrays raise ``RecursionError``,
``1e400`` parses to ``inf`` and a 400-digit integer makes ``float()`` raise
``OverflowError`` where a field is checked. All are refused here, before any view sees them.

:func:`unstorable` is the one rule for text from anywhere else (form fields, query
parameters, headers): the characters no database of the studio can keep.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32
MAX_INT_DIGITS = 100  # seeds are 64-bit at most (20 digits); floats overflow past 308 digits


NUL_TEXT = "must not contain the NUL character (\\u0000)"
SURROGATE_TEXT = "must not contain a lone surrogate (\\ud800-\\udfff): send valid Unicode text"


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can.

    PostgreSQL refuses NUL in text and jsonb (SQLite keeps it, so only one mode would fail);
    a lone surrogate has no UTF-8 form, so no database, page or JSON answer can carry it.
    """
    if "\x00" in text:
        return NUL_TEXT
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_TEXT
    return None


def printable_name(name: str) -> str:
    """``name`` as it can be shown in an answer: NUL and lone surrogates escaped (``\\x00``)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class UnstorableText(ParseError):
    """A string of the body no database can keep; ``field`` names where it is (``prompt``,
    ``inputs.0.text``), ``reason`` says what is wrong. Answered as a 400 with ``fields``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


def check_json_value(value: Any, depth: int = 0, path: str = "") -> None:
    """Raise ``ParseError`` for nesting past ``MAX_DEPTH``, ``UnstorableText`` for a string
    (value or key) that holds NUL or a lone surrogate."""
    if depth > MAX_DEPTH:
        raise ParseError(f"JSON parse error - the body is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, str):
        reason = unstorable(value)
        if reason:
            raise UnstorableText(path or "the body", reason)
    elif isinstance(value, dict):
        for key, item in value.items():
            field = f"{path}.{printable_name(key)}" if path else printable_name(key)
            reason = unstorable(key)
            if reason:
                raise UnstorableText(field, f"the name {reason}")
            check_json_value(item, depth + 1, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, depth + 1, f"{path}.{index}" if path else str(index))


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises ``ParseError`` for anything the studio should not keep."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_sized_int)
    except RecursionError:
        raise ParseError(f"JSON parse error - the body is nested deeper than {MAX_DEPTH} levels.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    check_json_value(value)
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but parses to inf, which no field takes and strict JSON cannot answer.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _sized_int(text: str) -> int:
    # A 400-digit integer parses, then float(value) raises OverflowError (not ValueError) in the
    # code that checks it; past MAX_INT_DIGITS nothing the studio takes is meant.
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"the number {text[:40]}... has more than {MAX_INT_DIGITS} digits")
    return int(text)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with :func:`loads`: 400 for deep nesting, NUL, lone surrogates, NaN, a bad charset."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding)
        except UnicodeError as exc:  # UnicodeDecodeError, or idna's own complaints
            raise ParseError(f"JSON parse error - the body is not {encoding}: {exc}") from None
        except LookupError:  # Django keeps any charset codecs knows, "rot13" and "base64" included
            raise ParseError(f"JSON parse error - {encoding} is not a text encoding: send UTF-8.") from None
        return loads(text)
