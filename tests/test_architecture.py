"""The rooms of the package import only what docs/architecture.md allows them to, lazy
imports included, and the allowed graph has no cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"


def allowed() -> dict[str, set[str]]:
    """The table in docs/architecture.md: | `room` | holds | may import |."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms: dict[str, set[str]] = {}
    for room, imports in re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]*) \|$", text, re.M):
        rooms[room] = set()
        for item in imports.split(","):
            item = item.strip()
            if item.startswith("every room above"):
                rooms[room] |= set(rooms) - {room}
                item = item.removeprefix("every room above").strip(" ,")
            if item and item != "—":
                rooms[room].add(item)
    return rooms


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_rooms(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "gateway":  # from gateway import x
                names = [f"gateway.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gateway" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_the_table_names_every_room() -> None:
    rooms = allowed()
    present = {room_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert present - set(rooms) == set(), "rooms missing from docs/architecture.md"
    assert set(rooms) - present == set(), "docs/architecture.md lists rooms that do not exist"


def test_rooms_import_only_what_they_may() -> None:
    rooms = allowed()
    rooms["__main__"] = {"cli"}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = room_of(path)
        if room == "__init__":
            continue
        for other in sorted(imported_rooms(path) - {room} - rooms[room]):
            wrong.append(f"{path.relative_to(ROOT)} imports gateway.{other}")
    assert not wrong, "imports docs/architecture.md does not allow:\n" + "\n".join(wrong)


def test_the_allowed_graph_has_no_cycle() -> None:
    rooms = allowed()
    done: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, "cycle: " + " -> ".join((*path, room))
        if room in done:
            return
        for other in rooms[room]:
            visit(other, (*path, room))
        done.add(room)

    for room in rooms:
        visit(room, ())
