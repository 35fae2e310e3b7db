"""`python -m tools.supply_chain COMMAND`: the Makefile's supply chain steps.

check        everything `make lint` checks: lock, front-end record, licences, audit
lock-digest  records pyproject.toml's requirement lists in requirements.lock (make lock)
licenses     writes docs/licenses.md (make licenses)
audit        the vulnerability audit alone (--save-snapshot: also supply-chain/)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.supply_chain import audit, frontend, licenses, lockfile

ROOT = Path(__file__).resolve().parents[2]
PIP_LICENSES = Path(sys.executable).parent / "pip-licenses"


def _report(title: str, problems: list[str]) -> bool:
    for problem in problems:
        print(f"{title}: {problem}")
    return not problems


def _audit(root: Path, options: argparse.Namespace, save_snapshot: bool = False) -> int:
    return audit.run_audit(
        root,
        index=options.index,
        online=not options.offline,
        osv_db=options.osv_db,
        save_snapshot=save_snapshot,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.supply_chain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the project's root")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("check", "audit"):
        command = commands.add_parser(name)
        command.add_argument("--offline", action="store_true", help="do not ask the index")
        command.add_argument("--index", default=audit.PYPI, help="the index's base URL")
        command.add_argument(
            "--osv-db", type=Path, help="a folder of OSV records to audit against too"
        )
        if name == "audit":
            command.add_argument(
                "--save-snapshot",
                action="store_true",
                help=f"write the known state to {audit.STATE_FILE}",
            )
    commands.add_parser("lock-digest")
    commands.add_parser("licenses")
    options = parser.parse_args(argv)
    root: Path = options.root

    if options.command == "lock-digest":
        lockfile.write_digest(root / "pyproject.toml", root / "requirements.lock")
        return 0
    if options.command == "licenses":
        problems = licenses.write(root, PIP_LICENSES)
        print(f"wrote {licenses.OUTPUT}")
        return 0 if _report("licences", problems) else 1
    if options.command == "audit":
        return _audit(root, options, save_snapshot=options.save_snapshot)

    lock_problems = lockfile.lock_problems(root / "pyproject.toml", root / "requirements.lock")
    ok = not lock_problems
    if lock_problems:
        print(lockfile.lock_message(lock_problems))
    ok &= _report("front-end files", frontend.frontend_problems(root))
    ok &= _report("licences", licenses.license_problems(root, PIP_LICENSES))
    ok &= _audit(root, options) == 0
    print("supply chain: ok" if ok else "supply chain: FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
