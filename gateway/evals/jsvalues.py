"""Values as JavaScript writes them, because promptfoo compares and renders them that way.

A suite moved from promptfoo says `value: 1.0` or `value: true` and means the text JavaScript's
`String()` makes of it ("1", "true"), not Python's ("1.0", "True").
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


def js_number(value: float) -> str:
    """ECMAScript Number::toString: the shortest digits, in plain notation from 1e-6 to 1e21."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # JavaScript writes -0 as "0" too
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that read back to the same double, as JavaScript does.
    _, digit_tuple, exponent = Decimal(repr(abs(float(value)))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    k = len(digits)
    # n: where the decimal point falls, counted from the first digit (value = 0.digits * 10^n).
    n = exponent + len(digit_tuple)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


def js_string(value: Any) -> str:
    """`String(value)` for the values YAML and JSON give: text of numbers, booleans, lists."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, list | tuple):
        # Array.prototype.toString: items joined by commas, null and undefined as "".
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def js_json(value: Any) -> str:
    """`JSON.stringify(value)`: compact, numbers as JavaScript writes them."""
    if isinstance(value, float) and math.isfinite(value):
        return js_number(value)
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return "null"  # JSON.stringify(NaN) is "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{js_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return json.dumps(str(value), ensure_ascii=False)
