"""The README, run: its quick start and every example, literally, on a fresh copy of the
project, so the README cannot drift from the code.

Each fenced block of README.md is one of these. A marker is an HTML comment on the last
non-blank line before the fence (GitHub does not show it): `<!-- readme-test: ... -->`.

- ```bash and ```python blocks (no marker, or `exit N`) run in README order in one shared
  world: a copy of the project's Git files, committed into a new repository (a fresh clone:
  no `.venv/` inside, no `.gateway/`), where the gateway runs as the quick start starts it:
  the command `make run` runs (its recipe read from the Makefile, `$(BIN)` being the bin
  folder of the Python running this test, the project installed there as `make install`
  does) with the Makefile's exports, and one setting, `GATEWAY_PORT`, a free port. The one
  substitution in the blocks: `127.0.0.1:8080` becomes that server's address.
  - bash: `set -euo pipefail`, from the project's root, with that bin folder (`gateway`,
    `python`) first on PATH. Shell variables a block sets are seen by the blocks after it,
    as in one terminal (`KEY=...`). `curl` runs with `--fail-with-body`, so an HTTP error
    fails the block as a failing command would.
  - python: one interpreter for every block, as if pasted into one session (the quick
    start's `client` serves the later blocks); an uncaught exception fails the block.
  - each block must exit 0, or N with `<!-- readme-test: exit N -->`.
  - `# -> TEXT` ending a line: TEXT (a quoted string is unquoted) must appear in the
    block's output, after the previous one's.
- `<!-- readme-test: skip REASON -->`: not run (make targets, provider keys, ...); the reason
  is required and says why.
- `<!-- readme-test: synopsis -->`: a command reference with placeholders (NAME, [--opt X],
  `a | b` alternatives): not run, but each `gateway ...` line and each `|` alternative must
  name a real command, and every `--option` it shows must exist on that command.
- `<!-- readme-test: file PATH -->`: the block shows the file PATH of the project: it must
  exist and hold the same YAML.
- `<!-- readme-test: config -->`: a gateway.yaml that `gateway config check` accepts (each
  `os.environ/NAME` it reads set to a placeholder).

A block that is none of these (say a new ```yaml example, or an unknown marker) fails
`test_every_block_is_run_or_marked`: new examples are tested by default.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
import yaml

from gateway.cli.main import app as cli_app
from tests.conftest import ROOT, free_port

README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
DOCUMENTED_ADDRESS = "127.0.0.1:8080"
BLOCK_TIMEOUT = 300  # s: an eval run loads the embedding model; a hang must still end
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<text>.*?)\s*-->$")
EXPECTED = re.compile(r"#\s*->\s*(?P<text>.+?)\s*$")
# A version id written into an example can never exist in a reader's database.
MADE_UP_VERSION = re.compile(r"@[0-9a-f]{12}\b|\b[0-9a-f]{12}=")


@dataclass(frozen=True)
class Block:
    line: int  # the opening fence's line, counted from 1
    lang: str
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang or 'text'}"

    @property
    def kind(self) -> str:
        """run, skip, synopsis, file or config; a problem's description otherwise."""
        if self.marker is None:
            if self.lang in RUNNABLE:
                return "run"
            return f"a ```{self.lang} block the test cannot run: mark it (see tests/test_readme.py)"
        word, _, rest = self.marker.partition(" ")
        if word == "skip":
            return "skip" if rest.strip() else "`skip` needs a reason"
        if word == "exit":
            if self.lang not in RUNNABLE:
                return f"`exit` on a ```{self.lang} block, which does not run"
            return "run" if rest.strip().isdigit() else "`exit` needs a number"
        if word == "synopsis":
            return "synopsis" if RUNNABLE.get(self.lang) == "bash" else "a synopsis is ```bash"
        if word == "file":
            return "file" if rest.strip() else "`file` needs a PATH"
        if word == "config":
            return "config" if self.lang == "yaml" else "a config is a ```yaml block"
        return f"unknown marker {self.marker!r}"

    @property
    def expected_exit(self) -> int:
        if self.marker and self.marker.startswith("exit "):
            return int(self.marker.split()[1])
        return 0

    @property
    def runner(self) -> str:
        return RUNNABLE[self.lang]

    def runnable_code(self, address: str) -> str:
        return self.code.replace(DOCUMENTED_ADDRESS, address)

    def expected_output(self) -> list[str]:
        texts = []
        for line in self.code.splitlines():
            found = EXPECTED.search(line)
            if found:
                text = found["text"]
                if text[:1] in "\"'":
                    text = str(ast.literal_eval(text))
                texts.append(text)
        return texts


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = lines[index]
        if not opening.startswith("```"):
            index += 1
            continue
        lang = opening[3:].strip().split(" ")[0].lower()
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        found = MARKER.match(before)
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(index + 1, lang, code, found["text"] if found else None))
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def of_kind(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == kind]


# -- what needs no running gateway --------------------------------------------------------


def test_every_block_is_run_or_marked() -> None:
    kinds = {"run", "skip", "synopsis", "file", "config"}
    problems = [f"{b.id}: {b.kind}" for b in BLOCKS if b.kind not in kinds]
    assert not problems, "\n".join(problems)
    assert any(b.kind == "run" and b.runner == "python" for b in BLOCKS)
    assert any(b.kind == "run" and b.runner == "bash" for b in BLOCKS)


def test_markers_are_read_as_documented() -> None:
    text = (
        "```bash\necho plain\n```\n<!-- readme-test: exit 2 -->\n\n```bash\nfalse\n```\n"
        "<!-- readme-test: skip needs an OpenAI key -->\n```python\nx\n```\n"
        "<!-- readme-test: skip -->\n```bash\nx\n```\n"
        "```yaml\na: 1\n```\n<!-- readme-test: file evals/x.yaml -->\n```yaml\na: 1\n```\n"
        "<!-- readme-test: config -->\n```yaml\nmodel_list: []\n```\n"
        "<!-- readme-test: synopsis -->\n```python\nx\n```\n"
        "<!-- readme-test: sometimes -->\n```bash\nx\n```\n"
        "```\nno language\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.line, b.kind) for b in blocks] == [
        (1, "run"),
        (6, "run"),
        (10, "skip"),
        (14, "`skip` needs a reason"),
        (17, "a ```yaml block the test cannot run: mark it (see tests/test_readme.py)"),
        (21, "file"),
        (25, "config"),
        (29, "a synopsis is ```bash"),
        (33, "unknown marker 'sometimes'"),
        (36, "a ``` block the test cannot run: mark it (see tests/test_readme.py)"),
    ]
    assert [b.expected_exit for b in blocks[:2]] == [0, 2]
    assert Block(1, "python", 'print(1)  # -> "one"\nf()  # -> 2\n', None).expected_output() == [
        "one",
        "2",
    ]


def test_examples_name_no_made_up_version() -> None:
    """A version id copied from the README fails when pasted: examples use a label, or say
    how to find a real version (`gateway prompts list`)."""
    found = [
        f"{b.id}: {line.strip()}"
        for b in BLOCKS
        for line in b.code.splitlines()
        if MADE_UP_VERSION.search(line)
    ]
    assert not found, "\n".join(found)


def _split_synopsis(line: str) -> list[str]:
    """The alternatives of a synopsis line (`a X | b Y`), without its `# comment`: a `|`
    inside [brackets] or quotes belongs to an alternative."""
    parts, current, depth, quote = [], "", 0, ""
    for position, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            break
        elif char == "|" and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _resolve(group: Any, words: list[str]) -> tuple[list[Any], list[str]]:
    """The command path the words name (click commands: typer's own copy of click, so
    told apart by what they have), and the words after it."""
    path = [group]
    while words and hasattr(path[-1], "commands"):
        sub = path[-1].commands.get(words[0])
        if sub is None:
            break
        path.append(sub)
        words = words[1:]
    return path, words


def _synopsis_problems(block: Block) -> list[str]:
    root = typer.main.get_command(cli_app)
    problems: list[str] = []
    text = re.sub(r"\\\n\s*", " ", block.code)
    for offset, line in enumerate(text.splitlines(), start=block.line + 1):
        alternatives = _split_synopsis(line)
        if not alternatives:
            continue
        if not alternatives[0].startswith("gateway "):
            problems.append(f"README.md:{offset}: a synopsis line starts with `gateway`")
            continue
        parent = root
        for number, alternative in enumerate(alternatives):
            words = shlex.split(alternative)
            words = words[1:] if number == 0 else words
            path, rest = _resolve(parent, words)
            command = path[-1]
            shown = " ".join(["gateway", *(c.name or "" for c in path[1:])])
            if len(path) == 1:
                problems.append(f"README.md:{offset}: no command `{alternative}`")
                continue
            if hasattr(command, "commands") and not command.invoke_without_command:
                problems.append(f"README.md:{offset}: `{shown}` needs a subcommand")
            options = {"--help"}
            for param in command.params:
                options.update(param.opts, param.secondary_opts)
            for word in rest:
                option = word.strip("[]").split("=")[0]
                if option.startswith("-") and option != "-" and option not in options:
                    problems.append(f"README.md:{offset}: `{shown}` has no option {option}")
            if number == 0:
                parent = path[-2]
    return problems


@pytest.mark.parametrize("block", of_kind("synopsis"))
def test_synopsis_names_real_commands_and_options(block: Block) -> None:
    problems = _synopsis_problems(block)
    assert not problems, "\n".join(problems)


def test_synopsis_check_catches_what_drifted() -> None:
    drifted = Block(1, "bash", "gateway keys list | shw ID\ngateway logs --tail 3\n", "synopsis")
    assert _synopsis_problems(drifted) == [
        "README.md:2: no command `shw ID`",
        "README.md:3: `gateway logs` has no option --tail",
    ]


@pytest.mark.parametrize("block", of_kind("file"))
def test_file_blocks_show_the_project_files(block: Block) -> None:
    assert block.marker is not None
    path = ROOT / block.marker.split(" ", 1)[1].strip()
    assert path.is_file(), f"{block.id} shows {path.relative_to(ROOT)}, which does not exist"
    assert yaml.safe_load(block.code) == yaml.safe_load(path.read_text()), (
        f"{block.id} differs from {path.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("block", of_kind("config"))
def test_config_blocks_pass_config_check(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(block.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {name: "placeholder" for name in re.findall(r"os\.environ/(\w+)", block.code)}
    env["PYTHONPATH"] = str(ROOT)
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert checked.returncode == 0, f"{block.id}:\n{checked.stderr}"


# -- the quick start and the examples, run --------------------------------------------------


@dataclass
class Outcome:
    status: int
    output: str


@dataclass
class World:
    """A fresh clone with the gateway serving it; runs the README's blocks in order."""

    root: Path
    address: str
    env: dict[str, str]
    scratch: Path
    server: subprocess.Popen[bytes]
    server_log: Path
    done: dict[int, Outcome] = field(default_factory=dict)
    python: PythonSession | None = None

    def outcome(self, block: Block) -> Outcome:
        for earlier in BLOCKS:
            if (
                earlier.kind == "run"
                and earlier.line <= block.line
                and earlier.line not in self.done
            ):
                self.done[earlier.line] = self._run(earlier)
        return self.done[block.line]

    def _run(self, block: Block) -> Outcome:
        code = block.runnable_code(self.address)
        if block.runner == "python":
            if self.python is None:
                self.python = PythonSession(self.root, self.env, self.scratch)
            return self.python.run(block, code)
        return self._bash(block, code)

    def _bash(self, block: Block, code: str) -> Outcome:
        script = self.scratch / f"block-{block.line}.sh"
        state = shlex.quote(str(self.scratch / "shell-state.sh"))
        script.write_text(BASH_TEMPLATE.format(state=state, code=code))
        try:
            done = subprocess.run(
                ["bash", str(script)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=BLOCK_TIMEOUT,
                cwd=self.root,
                env=self.env,
            )
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout if isinstance(exc.stdout, str) else ""
            return Outcome(-1, f"{output}\n(still running after {BLOCK_TIMEOUT} s)")
        return Outcome(done.returncode, done.stdout)

    def server_tail(self, lines: int = 40) -> str:
        return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-lines:])


# Shell variables outlive a block, as in one terminal: what a block defines is saved with
# `declare -p` and read back by the next block (bash's own variables excepted).
BASH_TEMPLATE = """\
__readme_known=$(compgen -v)
if [[ -f {state} ]]; then source {state}; fi
set -euo pipefail
{code}
set +eu
__readme_new=$(compgen -v | grep -vxF "$__readme_known" \
  | grep -vE '^(__readme|BASH|PIPESTATUS|FUNCNAME|COLUMNS|LINES|_$)')
if [[ -n "$__readme_new" ]]; then declare -p $__readme_new > {state}; fi
"""

# One interpreter for every Python block. Code arrives as JSON lines; after each block a
# line with the end mark and the exit status. Compiled as README.md with the block's own
# line numbers, so a traceback points at the README line that failed.
PYTHON_SESSION = """\
import json, sys, traceback
namespace = {"__name__": "__main__"}
for request in sys.stdin:
    block = json.loads(request)
    status = 0
    try:
        code = "\\n" * block["line"] + block["code"]
        exec(compile(code, "README.md", "exec"), namespace)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"\\n{MARK} {status}", flush=True)
"""
END_MARK = "@@readme-test-block-ended"


class PythonSession:
    def __init__(self, root: Path, env: dict[str, str], scratch: Path) -> None:
        program = scratch / "python_session.py"
        program.write_text(PYTHON_SESSION.replace("{MARK}", END_MARK))
        self.process = subprocess.Popen(
            [str(VENV_BIN / "python"), "-u", str(program)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=root,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, block: Block, code: str) -> Outcome:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"line": block.line, "code": code}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return Outcome(-1, "the Python session has ended")
        output: list[str] = []
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                return Outcome(-1, "".join(output) + f"\n(still running after {BLOCK_TIMEOUT} s)")
            if line is None:
                return Outcome(-1, "".join(output) + "\n(the Python session ended)")
            if line.startswith(END_MARK):
                text = "".join(output)
                return Outcome(int(line.split()[1]), text[:-1] if text.endswith("\n") else text)
            output.append(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_run(makefile: Path) -> tuple[list[str], dict[str, str]]:
    """What `make run` runs, after `make install`: the `run` recipe's command with the
    Makefile's variables, and the variables it exports."""
    text = makefile.read_text()
    exports = dict(re.findall(r"^export (\w+) :?= *(.*?)\s*$", text, re.MULTILINE))
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert recipe, "the Makefile has no `run` target, which the quick start uses"
    commands = [line.strip().lstrip("@") for line in recipe.group(1).splitlines()]
    assert len(commands) == 1, f"`make run` runs more than one command: {commands}"
    variables = {"BIN": str(VENV_BIN), "VENV": str(VENV_BIN.parent)}
    unknown = set(re.findall(r"\$\((\w+)\)", commands[0])) - variables.keys()
    assert not unknown, f"`make run` uses Makefile variables this test does not know: {unknown}"
    command = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], commands[0])
    return shlex.split(command), exports


def fresh_clone(destination: Path) -> None:
    """The project's files as Git has them (tracked, and new files not ignored), committed
    into a new repository: what a reader gets from `git clone`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is gone
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ["git", "-c", "user.name=README reader", "-c", "user.email=reader@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *args], cwd=destination, check=True, capture_output=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not (VENV_BIN / "gateway").exists():
        pytest.skip(f"the project is not installed beside {sys.executable} (make install)")
    for tool in ("git", "curl", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README's examples need {tool}")
    base = tmp_path_factory.mktemp("readme")
    root, scratch, shims = base / "project", base / "scratch", base / "shims"
    for folder in (root, scratch, shims):
        folder.mkdir()
    fresh_clone(root)
    curl = shims / "curl"
    curl.write_text(f'#!/bin/sh\nexec {shutil.which("curl")} --fail-with-body "$@"\n')
    curl.chmod(0o755)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    # The copy's code, whatever checkout the installed `gateway` script was installed from.
    env["PYTHONPATH"] = str(root)
    env["PATH"] = os.pathsep.join([str(shims), str(VENV_BIN), env.get("PATH", "")])
    command, exports = make_run(root / "Makefile")
    port = free_port()
    server_log = scratch / "server.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            command,
            cwd=root,
            env=env | exports | {"GATEWAY_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    address = f"127.0.0.1:{port}"
    current = World(root, address, env, scratch, server, server_log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://{address}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`make run` did not serve:\n{current.server_tail()}")
            time.sleep(0.1)
        yield current
    finally:
        if current.python is not None:
            current.python.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_quick_start_serves_with_a_new_master_key(world: World) -> None:
    """As the quick start says: on first start a master key is made, printed once and kept
    in .gateway/master_key, readable by its owner only."""
    key_file = world.root / ".gateway" / "master_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() in world.server_log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("block", of_kind("run"))
def test_readme_example_runs(world: World, block: Block) -> None:
    outcome = world.outcome(block)
    shown = (
        f"{block.id} ({block.runner}) exited {outcome.status}, expected {block.expected_exit}\n"
        f"--- block (run on {world.address}) ---\n{block.runnable_code(world.address)}"
        f"--- output ---\n{outcome.output}\n--- gateway log (last lines) ---\n"
        f"{world.server_tail()}"
    )
    assert outcome.status == block.expected_exit, shown
    position = 0
    for text in block.expected_output():
        found = outcome.output.find(text, position)
        assert found >= 0, f"{block.id}: `# -> {text}` not in the output (in order)\n{shown}"
        position = found + len(text)
