"""Before/after of the prompt render step: two revisions, measured in alternating rounds.

    python -m bench.render_ab HEAD WORKTREE

What a prompt-by-name call spends in `PromptRenderer.render` (variables checked, the template
rendered, the text split into messages), for the benchmark's prompt and the shipped ones. As
in `bench.ab`, the two revisions take turns, round by round, each in a fresh process, and the
medians over the rounds are the figures to quote: a neighbour's burst then lands on both.
The time is the process's CPU time, so waiting for a CPU a neighbour holds is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CURRENT = "WORKTREE"

# Runs inside the revision's tree: only APIs both sides of a change have (parse_prompt, and
# PromptRenderer.render(prompt, variables)).
_MEASURE = r"""
import asyncio, json, sys, tempfile, time
from pathlib import Path
from bench.configs import PROMPT_FILE
from gateway.prompts.files import parse_prompt
from gateway.prompts.render import PromptRenderer

iterations = int(sys.argv[1])
folder = Path(tempfile.mkdtemp())
(folder / "bench.prompt").write_text(PROMPT_FILE, encoding="utf-8")
passages = [{"source": f"doc-{i}", "text": f"Passage {i} says something useful."} for i in range(3)]
cases = {
    "bench": (folder / "bench.prompt", {"x": "hi"}),
    "support-triage": (
        Path("prompts/support-triage.prompt"),
        {"ticket": "I was charged twice this month.", "customer_tier": "enterprise"},
    ),
    "rag-answer": (
        Path("prompts/rag-answer.prompt"), {"question": "How much?", "context": passages}
    ),
    "summarize": (Path("prompts/summarize.prompt"), {"text": "The office moves in May."}),
}

async def main():
    renderer = PromptRenderer()
    out = {}
    for name, (path, variables) in cases.items():
        prompt = parse_prompt(path)
        for _ in range(200):
            await renderer.render(prompt, variables)
        started = time.process_time()
        for _ in range(iterations):
            await renderer.render(prompt, variables)
        out[name] = (time.process_time() - started) / iterations * 1e6
    print(json.dumps(out))

asyncio.run(main())
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help=f"a git revision, or {CURRENT}")
    parser.add_argument("after", help=f"a git revision, or {CURRENT}")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3000, help="renders per case per round")
    return parser.parse_args()


def tree(revision: str, stack: contextlib.ExitStack) -> Path:
    """The revision's files (a plain copy from `git archive`: no worktree to clean up)."""
    if revision == CURRENT:
        return ROOT
    where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="render-ab-")))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "gateway", "bench", "prompts"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where


def measure(source: Path, iterations: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(iterations)],
        cwd=source,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    args = parse_args()
    with contextlib.ExitStack() as stack:
        sources = {"before": tree(args.before, stack), "after": tree(args.after, stack)}
        rounds: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for index in range(args.rounds):
            order = ["before", "after"] if index % 2 == 0 else ["after", "before"]
            for side in order:
                rounds[side].append(measure(sources[side], args.iterations))
            print(f"round {index + 1}/{args.rounds} done", file=sys.stderr)
    cases = list(rounds["before"][0])
    print(f"render step, µs of CPU per call (median of {args.rounds} rounds)")
    print(f"{'prompt':16} {args.before:>12} {args.after:>12} {'change':>8}")
    for case in cases:
        before = statistics.median(r[case] for r in rounds["before"])
        after = statistics.median(r[case] for r in rounds["after"])
        print(f"{case:16} {before:12.1f} {after:12.1f} {(after / before - 1) * 100:+7.1f}%")


if __name__ == "__main__":
    main()
