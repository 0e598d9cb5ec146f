"""Request body parsers that answer bad input with a 400, never a 500.

Python's ``json`` accepts what later breaks the studio: a lone surrogate (``"\\ud800"``)
cannot be encoded back to UTF-8 when the value is shown again, deeply nested arrays
raise ``RecursionError``, ``1e400`` parses to ``inf`` and a 400-digit integer makes
``float()`` raise ``OverflowError`` where a field is checked. All are refused here, before
any view sees them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32
MAX_INT_DIGITS = 100  # seeds are 64-bit at most (20 digits); floats overflow past 308 digits


def check_json_value(value: Any, depth: int = 0) -> None:
    """Raise ``ParseError`` for nesting past ``MAX_DEPTH`` or a string that is not valid Unicode."""
    if depth > MAX_DEPTH:
        raise ParseError(f"JSON parse error - the body is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("JSON parse error - a string holds a lone surrogate (\\ud800-\\udfff): "
                             "send valid Unicode text.") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_value(key, depth + 1)
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)


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
    """DRF's JSON parser with :func:`loads`: 400 for deep nesting, lone surrogates, NaN, a bad charset."""

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
