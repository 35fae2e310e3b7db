"""What a prompt's Handlebars body refers to, with the line of each reference.

dotpromptz's Handlebars parser keeps no positions, so this small scanner walks the tags itself
to say *where* a variable is used; the real parser still runs afterwards as a syntax check.
It tracks scope the way Handlebars does: `#each`, `#with` and plain sections enter a new
context (names inside are relative to it), `#if` and `#unless` do not. It also notes the
partials a body includes and the `@` data it reads, so the file's checks can say which
partial is missing and which `@` name nothing fills.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# Helpers the gateway renders with: Dotprompt's and Handlebars' `lookup`. `log` is left out
# (it prints to the server's stdout).
HELPERS = frozenset(
    {"role", "history", "section", "media", "json", "ifEquals", "unlessEquals", "lookup"}
)
# `@` names Handlebars fills itself (in #each, and in partial blocks).
HANDLEBARS_DATA = frozenset({"root", "index", "key", "first", "last", "level", "partial-block"})
_SCOPED = frozenset({"each", "with"})
_CONDITIONS = frozenset({"if", "unless"})
ROLES = ("system", "user", "model")
_LITERALS = frozenset({"true", "false", "null", "undefined"})
_NUMBER = re.compile(r"-?\d+(\.\d+)?")

# Blocks open at once: deeper is no template a person maintains, and the bound keeps the
# scan linear in the body's size.
MAX_NESTING = 64


@dataclass(frozen=True)
class PartialUse:
    name: str
    line: int
    # Called in the input's own context ({{> card}} outside #each / #with, no context
    # argument): the partial's top-level names are then the prompt's variables, bar these.
    top_level: bool
    hash_keys: frozenset[str]
    block: bool = False  # {{#> name}}fallback{{/name}}: a missing partial renders the fallback


@dataclass
class BodyScan:
    variables: dict[str, int] = field(default_factory=dict)  # top-level name -> first line
    data: dict[str, int] = field(default_factory=dict)  # `@` path (auth.key.id) -> first line
    partials: list[PartialUse] = field(default_factory=list)
    inline: set[str] = field(default_factory=set)  # partials the body defines itself
    problems: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Open:
    name: str
    line: int
    scoped: bool


def scan_body(body: str, first_line: int) -> BodyScan:
    """Top-level variables the body reads, and tag problems, with lines in the whole file."""
    result = BodyScan()
    stack: list[_Open] = []
    line, counted = first_line, 0
    for start, text in _tags(body):
        line, counted = line + body.count("\n", counted, start), start
        if _escaped(body, start) or text is None:
            continue
        _visit_tag(text.strip("~ \t\n"), line, stack, result)
        if len(stack) > MAX_NESTING:
            message = f"blocks nested more than {MAX_NESTING} deep (simplify the template)"
            result.problems.append((line, message))
            return result
    for block in stack:
        result.problems.append(
            (block.line, f"{{{{#{block.name}}}}} is never closed (add {{{{/{block.name}}}}})")
        )
    return result


class _Next:
    """The next place a string occurs at or after a position, remembered: the tag scan asks
    for ever later positions, so each string's occurrences are searched for once in all."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.found: dict[str, int] = {}

    def __call__(self, needle: str, start: int) -> int:
        known = self.found.get(needle)
        if known is None or (known != -1 and known < start):
            known = self.found[needle] = self.body.find(needle, start)
        return known


def _first(*positions: int) -> int:
    return min((p for p in positions if p >= 0), default=-1)


def _tags(body: str) -> Iterator[tuple[int, str | None]]:
    """(offset, inner text) of each tag, None for raw blocks and comments, in Handlebars'
    order of precedence: raw block, {{!-- --}}, {{! }}, {{{ }}}, then {{ }}."""
    find = _Next(body)
    raw_closes: list[int] = []  # the next raw-block end, memoized like _Next does for strings
    pos = 0
    while (start := find("{{", pos)) >= 0:
        end = _raw_block_end(body, start, find, raw_closes)
        if end >= 0:
            yield start, None
            pos = end
            continue
        tilde = 1 if body.startswith("~", start + 2) else 0
        inner = start + 2 + tilde
        if body.startswith("!--", inner):
            close = _first(find("--}}", inner + 3), find("--~}}", inner + 3))
            if close >= 0:
                yield start, None
                pos = close + (4 if body.startswith("--}}", close) else 5)
                continue
        if body.startswith("!", inner):
            close = find("}}", inner + 1)
            if close >= 0:
                yield start, None
                pos = close + 2
                continue
        if body.startswith("{", inner):
            close = _first(find("}}}", inner + 1), find("}~}}", inner + 1))
            if close >= 0:
                yield start, body[inner + 1 : close]
                pos = close + (3 if body.startswith("}}}", close) else 4)
                continue
        close = find("}}", start + 2)
        if close < 0:
            return  # no tag can end: the rest is text
        yield start, body[start + 2 : close]
        pos = close + 2


def _raw_block_end(body: str, start: int, find: _Next, memo: list[int]) -> int:
    """Where a raw block ({{{{name}}}} ... {{{{/name}}}}) opened at start ends, else -1."""
    if not body.startswith("{{{{", start):
        return -1
    opened = _braces_end(body, start + 4, find)
    if opened < 0:
        return -1
    if not memo or (memo[0] != -1 and memo[0] < opened):
        closing = find("{{{{/", opened)
        while closing >= 0 and _braces_end(body, closing + 5, find) < 0:
            closing = find("{{{{/", closing + 1)
        memo[:] = [closing]
    return -1 if memo[0] < 0 else _braces_end(body, memo[0] + 5, find)


def _braces_end(body: str, start: int, find: _Next) -> int:
    """The end of `[^}]*}}}}` at start (a raw block tag's name and close), else -1."""
    brace = find("}", start)
    return brace + 4 if brace >= 0 and body.startswith("}}}}", brace) else -1


def _visit_tag(text: str, line: int, stack: list[_Open], out: BodyScan) -> None:
    depth = sum(block.scoped for block in stack)
    if text.startswith("&"):
        text = text[1:].strip()
    if text.startswith("/"):
        _close(text[1:].strip(), line, stack, out)
    elif text in ("else", "^") or text.startswith("else "):
        if stack:  # the else branch of #each / #with renders in the enclosing context
            stack[-1].scoped = False
            depth = sum(block.scoped for block in stack)
        rest = _tokens(text[5:])
        if rest:  # {{else if cond}}
            _visit_call(rest, line, depth, out)
    elif text.startswith((">", "#>")):
        block = text.startswith("#")
        name = _visit_partial(text[2 if block else 1 :], line, depth, out, block)
        if block:  # {{#> layout}}fallback{{/layout}}: the fallback renders where it stands
            stack.append(_Open(name or "", line, scoped=False))
    elif text.startswith("#*"):
        tokens = _tokens(text[2:])
        if tokens[:1] != ["inline"] or len(tokens) != 2 or not _is_quoted(tokens[1]):
            message = f'{{{{{text}}}}}: the only decorator is {{{{#*inline "name"}}}}'
            out.problems.append((line, message))
        else:
            out.inline.add(tokens[1][1:-1])
        stack.append(_Open("inline", line, scoped=False))
    elif text.startswith(("#", "^")):
        tokens = _tokens(text[1:])
        if not tokens:
            return
        name = tokens[0]
        if name in _SCOPED or name in _CONDITIONS or name in HELPERS:
            arguments = [token for token in tokens[1:] if not _is_hash(token)]
            if (name in _SCOPED or name in _CONDITIONS) and len(arguments) != 1:
                message = f"{{{{#{name}}}}} needs exactly one argument, like {{{{#{name} items}}}}"
                out.problems.append((line, message))
            _visit_call(tokens, line, depth, out)
            stack.append(_Open(name, line, scoped=name in _SCOPED))
        elif len(tokens) > 1:
            out.problems.append((line, _unknown_helper(name)))
            stack.append(_Open(name, line, scoped=False))
        else:  # {{#items}}: a section that steps into the value; {{^items}} renders when empty
            _visit_path(name, line, depth, out)
            stack.append(_Open(name, line, scoped=text[0] == "#"))
    else:
        tokens = _tokens(text)
        if tokens:
            _visit_call(tokens, line, depth, out)


def _visit_partial(text: str, line: int, depth: int, out: BodyScan, block: bool) -> str | None:
    """{{> name [context] [key=value ...]}}: notes the use; returns the name."""
    tokens = _tokens(text)
    if not tokens:
        out.problems.append((line, "{{>}} names no partial (write {{> name}})"))
        return None
    name, rest = tokens[0], tokens[1:]
    if name.startswith("("):
        message = (
            f"{{{{> {name}}}}}: a partial chosen at render time cannot be checked or versioned "
            f"(name it: {{{{> card}}}}, or choose with #if)"
        )
        out.problems.append((line, message))
        return None
    if _is_quoted(name):
        name = name[1:-1]
    arguments = [token for token in rest if not _is_hash(token)]
    hashes = [token.split("=", 1) for token in rest if _is_hash(token)]
    for token in [*arguments, *(value for _, value in hashes)]:
        _visit_expr(token, line, depth, out)
    if len(arguments) > 1:
        out.problems.append((line, f"{{{{> {name}}}}} takes one context argument at most"))
    if name != "@partial-block":
        keys = frozenset(key for key, _ in hashes)
        out.partials.append(PartialUse(name, line, depth == 0 and not arguments, keys, block))
    return name


def _close(name: str, line: int, stack: list[_Open], out: BodyScan) -> None:
    name = name.split()[0] if name.split() else name
    if stack and stack[-1].name == name:
        stack.pop()
        return
    if not stack:
        out.problems.append((line, f"{{{{/{name}}}}} closes no open block (remove it)"))
        return
    top = stack[-1]
    out.problems.append(
        (
            line,
            f"{{{{/{name}}}}} does not match {{{{#{top.name}}}}} opened at line {top.line} "
            f"(close it with {{{{/{top.name}}}}} first)",
        )
    )
    names = [block.name for block in stack]
    if name in names:  # recover so one typo does not cascade into many problems
        del stack[len(names) - 1 - names[::-1].index(name) :]


def _visit_call(tokens: list[str], line: int, depth: int, out: BodyScan) -> None:
    name, params = tokens[0], [t.split("=", 1)[1] if _is_hash(t) else t for t in tokens[1:]]
    if name == "role":
        _check_role(params, line, out)
        return
    if name in HELPERS or name in _SCOPED or name in _CONDITIONS:
        for param in params:
            _visit_expr(param, line, depth, out)
    elif params:
        out.problems.append((line, _unknown_helper(name)))
    else:
        _visit_expr(name, line, depth, out)


def _check_role(params: list[str], line: int, out: BodyScan) -> None:
    quoted = len(params) == 1 and _is_quoted(params[0])
    role = params[0][1:-1] if quoted else None
    if role not in ROLES:
        got = f"role {role!r}" if quoted else "{{role}} without one quoted role"
        hint = " ('model' is the assistant)" if role == "assistant" else ""
        out.problems.append((line, f'{got}: use {{{{role "system"}}}}, "user" or "model"{hint}'))


def _visit_expr(token: str, line: int, depth: int, out: BodyScan) -> None:
    if token.startswith("(") and token.endswith(")"):
        inner = _tokens(token[1:-1])
        if inner:
            if inner[0] not in HELPERS:
                out.problems.append((line, _unknown_helper(inner[0])))
            else:
                _visit_call(inner, line, depth, out)
        return
    if _is_quoted(token) or token in _LITERALS or _NUMBER.fullmatch(token):
        return
    _visit_path(token, line, depth, out)


def _visit_path(path: str, line: int, depth: int, out: BodyScan) -> None:
    if path.startswith("@root.") or path.startswith("@root/"):
        path, depth = path[6:], 0
    elif path.startswith("@"):
        head = re.split(r"[./\[]", path[1:], maxsplit=1)[0]
        if head and head not in HANDLEBARS_DATA:
            out.data.setdefault(path[1:].replace("/", "."), line)
        return
    while path.startswith("../"):
        path, depth = path[3:], depth - 1
    if depth != 0:
        return  # relative to an #each / #with item, or climbing above the input
    path = re.sub(r"^(this|\.)(?:[./]|$)", "", path)
    if path.startswith("["):
        name = path[1 : path.find("]")] if "]" in path else path[1:]
    else:
        name = re.split(r"[./\[]", path, maxsplit=1)[0]
    if name:
        out.variables.setdefault(name, line)


def _escaped(body: str, start: int) -> bool:
    """\\{{ is a literal {{, but \\\\{{ is a backslash and then a real tag."""
    return body[start - 1 : start] == "\\" and body[start - 2 : start - 1] != "\\"


def _tokens(text: str) -> list[str]:
    """Split a tag into its words, keeping quoted strings and (subexpressions) whole."""
    text = text.split(" as |", 1)[0]
    words: list[str] = []
    buf: list[str] = []
    depth, quote = 0, ""
    for char in text.strip():
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char.isspace() and depth == 0:
            if buf:
                words.append("".join(buf))
                buf = []
            continue
        buf.append(char)
    if buf:
        words.append("".join(buf))
    return words


def _is_quoted(token: str) -> bool:
    return len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'"


def _is_hash(token: str) -> bool:
    return "=" in token and token[0] not in "\"'(" and token.split("=", 1)[0].isidentifier()


def _unknown_helper(name: str) -> str:
    return f"unknown helper {name!r} (available: {', '.join(sorted(HELPERS))}, #if, #each, ...)"
