"""`regex` assertions as JavaScript reads them: promptfoo builds `new RegExp(value)` (no flags),
so a suite moved from promptfoo must match the same outputs here.

The pattern is translated to the `regex` engine (which, like JavaScript, allows lookbehinds of
any width) with JavaScript's meaning made explicit: `\\d`, `\\w` and `\\b` are ASCII-only, `\\s`
is JavaScript's whitespace set, `.` stops at the four line terminators, `$` is the very end,
and, without the `u` flag, the text is matched as UTF-16 code units, so an emoji is two
characters to `.` and to `{n}`. Constructs that JavaScript refuses (`(?i)`, `(?P<...>)`,
possessive quantifiers) or reads differently from Python (`\\Z`, `\\A`, `\\p{L}`) are refused
with an explanation rather than silently changing a verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import regex

WORD = "A-Za-z0-9_"
# ECMAScript WhiteSpace and LineTerminator: what `\s` matches in JavaScript.
SPACE = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
# Complements over UTF-16 code units (every character is one once the text is in code units).
NOT_DIGIT = "\\x00-\\x2f\\x3a-\\uffff"
NOT_WORD = "\\x00-\\x2f\\x3a-\\x40\\x5b-\\x5e\\x60\\x7b-\\uffff"
NOT_SPACE = (
    "\\x00-\\x08\\x0e-\\x1f\\x21-\\x9f\\xa1-\\u167f\\u1681-\\u1fff\\u200b-\\u2027"
    "\\u202a-\\u202e\\u2030-\\u205e\\u2060-\\u2fff\\u3001-\\ufefe\\uff00-\\uffff"
)
CLASS_ESCAPES = {
    "d": "0-9",
    "D": NOT_DIGIT,
    "w": WORD,
    "W": NOT_WORD,
    "s": SPACE,
    "S": NOT_SPACE,
}
_W = f"[{WORD}]"
BOUNDARY = f"(?:(?<={_W})(?!{_W})|(?<!{_W})(?={_W}))"
NOT_BOUNDARY = f"(?:(?<={_W})(?={_W})|(?<!{_W})(?!{_W}))"
ANY_BUT_LINE_END = "[^\\n\\r\\u2028\\u2029]"
CONTROL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "v": "\v", "f": "\f"}
QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")
GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Escapes of letters that JavaScript (without the u flag) reads as the letter itself, while
# Python gives them a meaning: a pattern written for either would be misread by the other.
PYTHON_ONLY_ESCAPES = {
    "A": "the start of the text",
    "Z": "the end of the text",
    "z": "the end of the text",
    "G": "where the last match ended",
    "N": "a named character",
    "X": "a grapheme cluster",
    "p": "a Unicode property (JavaScript needs the u flag, which promptfoo does not set)",
    "P": "a Unicode property (JavaScript needs the u flag, which promptfoo does not set)",
    "h": "horizontal whitespace",
    "K": "keep out",
    "L": "a named list",
    "m": "the start of a word",
    "M": "the end of a word",
}


class JsRegexError(ValueError):
    """The pattern is not a JavaScript regular expression we can run with its meaning."""


@dataclass(frozen=True, slots=True)
class JsPattern:
    source: str
    compiled: regex.Pattern[str]
    astral: bool  # the pattern holds characters beyond U+FFFF (as surrogate pairs)

    def search(self, text: str) -> bool:
        return self.compiled.search(utf16_units(text)) is not None


def utf16_units(text: str) -> str:
    """The text as JavaScript sees it without the u flag: one character per UTF-16 code unit."""
    if text.isascii() or max(text) <= "\uffff":
        return text
    data = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(data[i] | data[i + 1] << 8) for i in range(0, len(data), 2))


def _char(code: int) -> str:
    """One literal character, escaped so that no engine reads it as syntax."""
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class _Translator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.text = utf16_units(source)
        self.pos = 0
        self.groups = _count_groups(self.text)
        self.names = set(re.findall(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", self.text))

    def fail(self, message: str) -> JsRegexError:
        return JsRegexError(f"/{self.source}/: {message}")

    def translate(self) -> str:
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == "\\":
                out.append(self.escape())
            elif char == "[":
                out.append(self.char_class())
            elif char == "(":
                out.append(self.group_open())
            elif char == ".":
                out.append(ANY_BUT_LINE_END)
            elif char == "$":
                out.append("\\Z")
            elif char in "^)|":
                out.append(char)
            elif char in "*+?":
                out.append(char + self.lazy_mark())
            elif char == "{":
                out.append(self.brace())
            else:
                out.append(_char(ord(char)))
        return "".join(out)

    def lazy_mark(self) -> str:
        """The `?` of a lazy quantifier; `+` after one is Python's possessive, an error in JS."""
        following = self.text[self.pos : self.pos + 1]
        if following == "?":
            self.pos += 1
            return "?"
        if following == "+":
            raise self.fail("`*+`, `++`, `?+` (possessive) are not JavaScript: nothing to repeat")
        return ""

    def brace(self) -> str:
        match = QUANTIFIER.match(self.text, self.pos - 1)
        if match is None:
            return "\\{"  # JavaScript (without u) reads a brace that opens no quantifier as text
        self.pos = match.end()
        return match.group(0) + self.lazy_mark()

    def group_open(self) -> str:
        rest = self.text[self.pos :]
        for opener in ("?:", "?=", "?!", "?<=", "?<!"):
            if rest.startswith(opener):
                self.pos += len(opener)
                return "(" + opener
        if rest.startswith("?<"):
            name = GROUP_NAME.match(rest, 2)
            if name is None or rest[name.end() : name.end() + 1] != ">":
                raise self.fail("a named group is written (?<name>...)")
            self.pos += name.end() + 1
            return f"(?P<{name.group(0)}>"
        if rest.startswith("?"):
            shown = rest[:4]
            raise self.fail(
                f"`({shown}` is not JavaScript (no inline flags, (?P<...>), comments or atomic "
                "groups); promptfoo refuses it"
            )
        return "("

    def escape(self) -> str:
        if self.pos >= len(self.text):
            raise self.fail("\\ at end of pattern")
        char = self.text[self.pos]
        self.pos += 1
        if char in CLASS_ESCAPES:
            return f"[{CLASS_ESCAPES[char]}]"
        if char == "b":
            return BOUNDARY
        if char == "B":
            return NOT_BOUNDARY
        if char.isdigit() and char != "0":
            return self.backreference(char)
        if char == "k" and self.names:
            return self.named_backreference()
        return self.atom_escape(char)

    def atom_escape(self, char: str) -> str:
        """An escape that stands for one character, in or out of a class."""
        if char in CONTROL_ESCAPES:
            return _char(ord(CONTROL_ESCAPES[char]))
        if char == "0" and not self.text[self.pos : self.pos + 1].isdigit():
            return "\\x00"
        if char == "c" and self.text[self.pos : self.pos + 1].isascii():
            letter = self.text[self.pos : self.pos + 1]
            if letter.isalpha():
                self.pos += 1
                return _char(ord(letter) % 32)
            return "\\\\"  # Annex B: "\c" not before a letter is a backslash and a c
        if char == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", self.text[self.pos : self.pos + 2]):
            code = int(self.text[self.pos : self.pos + 2], 16)
            self.pos += 2
            return _char(code)
        if char == "u":
            if re.fullmatch(r"[0-9A-Fa-f]{4}", self.text[self.pos : self.pos + 4]):
                code = int(self.text[self.pos : self.pos + 4], 16)
                self.pos += 4
                return _char(code)
            if self.text[self.pos : self.pos + 1] == "{":
                raise self.fail("\\u{...} needs the u flag, which promptfoo does not set")
        if char in PYTHON_ONLY_ESCAPES:
            raise self.fail(
                f"\\{char} is the letter {char} in JavaScript but {PYTHON_ONLY_ESCAPES[char]} "
                f"in Python; write {char} (or [{char}]) for the letter"
            )
        if char.isdigit():
            raise self.fail(f"\\{char} is an octal escape in JavaScript; write \\x escapes")
        return _char(ord(char))  # identity escape: the character itself

    def backreference(self, first: str) -> str:
        digits = first
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            if int(digits + self.text[self.pos]) > self.groups:
                break
            digits += self.text[self.pos]
            self.pos += 1
        if int(digits) > self.groups:
            raise self.fail(f"\\{digits} refers to group {digits}, and there are {self.groups}")
        # JavaScript matches a reference to a group that has not matched as empty; Python fails.
        return f"(?({digits})\\{digits}|)"

    def named_backreference(self) -> str:
        name = GROUP_NAME.match(self.text, self.pos + 1)
        if (
            self.text[self.pos : self.pos + 1] != "<"
            or name is None
            or name.group(0) not in (self.names)
        ):
            raise self.fail("\\k must name a group: \\k<name>")
        self.pos = name.end() + 1
        return f"(?({name.group(0)})(?P={name.group(0)})|)"

    def char_class(self) -> str:
        text = self.text
        negated = text[self.pos : self.pos + 1] == "^"
        if negated:
            self.pos += 1
        atoms: list[tuple[str, str]] = []  # ("char", escaped) or ("set", ranges)
        while True:
            if self.pos >= len(text):
                raise self.fail("a [ class is not closed")
            char = text[self.pos]
            self.pos += 1
            if char == "]":
                break
            if char == "\\":
                if self.pos >= len(text):
                    raise self.fail("\\ at end of pattern")
                escaped = text[self.pos]
                self.pos += 1
                if escaped in CLASS_ESCAPES:
                    atoms.append(("set", CLASS_ESCAPES[escaped]))
                elif escaped == "b":
                    atoms.append(("char", "\\x08"))  # in a class, \b is a backspace
                elif escaped == "-":
                    atoms.append(("char", "\\-"))
                else:
                    atoms.append(("char", self.atom_escape(escaped)))
            else:
                atoms.append(("char", "-" if char == "-" else _char(ord(char))))
        if not atoms:
            return "[\\s\\S]" if negated else "(?!)"  # [^] is any character, [] none
        return "[" + "^" * negated + _class_body(atoms) + "]"


def _class_body(atoms: list[tuple[str, str]]) -> str:
    """Ranges between two single characters; a `-` next to a class escape is a plain `-`."""
    parts: list[str] = []
    index = 0
    while index < len(atoms):
        kind, text = atoms[index]
        is_range = (
            kind == "char"
            and index + 2 < len(atoms)
            and atoms[index + 1] == ("char", "-")
            and atoms[index + 2][0] == "char"
        )
        if is_range:
            parts.append(f"{text}-{atoms[index + 2][1]}")
            index += 3
            continue
        parts.append("\\-" if (kind, text) == ("char", "-") else text)
        index += 1
    return "".join(parts)


def _count_groups(text: str) -> int:
    """Capturing groups: `(` not followed by `?`, or `(?<name>`, outside classes and escapes."""
    count, index, in_class = 0, 0, False
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            rest = text[index + 1 : index + 4]
            if not rest.startswith("?") or (rest.startswith("?<") and rest[2:3] not in "=!"):
                count += 1
        index += 1
    return count


@lru_cache(maxsize=512)
def compile_js(source: str) -> JsPattern:
    """The pattern JavaScript's `new RegExp(source)` builds, ready to search; JsRegexError says
    why a pattern cannot be used."""
    translator = _Translator(source)
    translated = translator.translate()
    try:
        compiled = regex.compile(translated, regex.V0)
    except regex.error as exc:
        raise JsRegexError(f"/{source}/: not a valid regular expression: {exc}") from None
    return JsPattern(source, compiled, translator.text != source)
