"""The supply chain: requirements.lock follows pyproject.toml, the audit fails on a known
vulnerability (online against a loopback index speaking PyPI's JSON API, offline from the
last known state) but never because the network is down, docs/licenses.md lists the SPDX
licence of every locked package as installed, and docs/frontend-assets.md the files served
at /docs/assets."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port
from tools.supply_chain import audit, frontend, licenses, lockfile
from tools.supply_chain.osv import load_database, record_from

PIP_LICENSES = Path(sys.executable).parent / "pip-licenses"
LOCAL_TORCH = Path("/opt/wheels")


def lock_text(*pins: tuple[str, str]) -> str:
    lines = ["# made by a test, as pip-compile writes it"]
    for name, version in pins:
        digest = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
        lines += [f"{name}=={version} \\", f"    --hash=sha256:{digest}", "    # via test"]
    return "\n".join(lines) + "\n"


# --- the lock ---------------------------------------------------------------------------


def test_the_lock_matches_pyproject() -> None:
    problems = lockfile.lock_problems(ROOT / "pyproject.toml", ROOT / "requirements.lock")
    assert not problems, lockfile.lock_message(problems)


def test_the_lock_pins_every_package_with_hashes_and_torch_as_the_cpu_build() -> None:
    pins = lockfile.read_lock(ROOT / "requirements.lock")
    assert all(pin.hashes for pin in pins.values())
    # The lock covers what pyproject.toml names, the tools behind `make lock`, pip itself
    # and the build backend of the editable install.
    for name in ("fastapi", "pytest", "pip-tools", "pip-licenses", "pip", "setuptools"):
        assert name in pins, name
    torch = pins["torch"]
    assert torch.version.endswith("+cpu"), "a lock without +cpu makes pip fetch CUDA torch"
    wheels = sorted(LOCAL_TORCH.glob(f"torch-{torch.version}-*.whl"))
    if not wheels:
        pytest.skip(f"no torch-{torch.version} wheel in {LOCAL_TORCH} on this machine")
    digests = {hashlib.sha256(wheel.read_bytes()).hexdigest() for wheel in wheels}
    assert set(torch.hashes) == digests


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(ROOT / "requirements.lock", tmp_path / "requirements.lock")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_moved_pin_fails_and_names_the_command(project: Path) -> None:
    pins = lockfile.read_lock(project / "requirements.lock")
    fastapi = pins["fastapi"].version
    edit(project / "pyproject.toml", f'"fastapi=={fastapi}"', '"fastapi==0.1.0"')
    problems = lockfile.lock_problems(project / "pyproject.toml", project / "requirements.lock")
    assert f"pyproject.toml requires fastapi==0.1.0, the lock has {fastapi}" in problems
    message = lockfile.lock_message(problems)
    assert "Run `make lock`" in message


def test_a_new_dependency_missing_from_the_lock_fails(project: Path) -> None:
    edit(project / "pyproject.toml", '"psutil==', '"never-locked==0.13.0",\n    "psutil==')
    problems = lockfile.lock_problems(project / "pyproject.toml", project / "requirements.lock")
    assert "pyproject.toml requires never-locked==0.13.0, the lock has no never-locked" in problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"psycopg[binary]==', '"psycopg=='),
        ('"hiredis==3.2.1",', ""),
        ('"typer==', '"typer[all]=='),
    ],
    ids=["extra dropped", "dependency removed", "extra added"],
)
def test_what_a_pin_comparison_misses_fails_through_the_digest(
    project: Path, old: str, new: str
) -> None:
    pyproject, lock = project / "pyproject.toml", project / "requirements.lock"
    edit(pyproject, old, new)
    problems = lockfile.lock_problems(pyproject, lock)
    assert problems == ["pyproject.toml's requirement lists changed since the lock was made"]
    lockfile.write_digest(pyproject, lock)  # what `make lock` does after pip-compile
    assert lockfile.lock_problems(pyproject, lock) == []


def test_reformatting_pyproject_changes_nothing(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    edit(pyproject, '"fastapi==', '# a comment\n    "FastAPI ==')
    assert lockfile.lock_problems(pyproject, project / "requirements.lock") == []


def test_an_entry_without_hash_fails(project: Path) -> None:
    lock = project / "requirements.lock"
    lines = lock.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("fastapi=="))
    lines[at] = lines[at].removesuffix(" \\")
    while lines[at + 1].strip().startswith("--hash"):
        del lines[at + 1]
    lock.write_text("\n".join(lines) + "\n")
    problems = lockfile.lock_problems(project / "pyproject.toml", lock)
    assert any(p.startswith("fastapi==") and p.endswith("has no --hash") for p in problems)


def test_the_makefile_installs_from_the_lock_and_lint_runs_the_checks() -> None:
    def recipe(target: str) -> str:
        return subprocess.run(
            ["make", "-n", "-B", target, "BIN=/nowhere", "VENV=/tmp/none"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    install = recipe("install")
    assert "--require-hashes -r requirements.lock" in install
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in install
    assert "'.[dev]'" not in install
    assert "python -m tools.supply_chain check" in recipe("lint")
    lock = recipe("lock")
    assert "pip-compile" in lock
    assert "--generate-hashes" in lock
    assert "lock-digest" in lock


# --- the audit --------------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class FakePyPI:
    """PyPI's JSON API on loopback: /pypi/NAME/VERSION/json for the versions it knows."""

    def __init__(self) -> None:
        self.versions: dict[str, list[dict[str, Any]]] = {}
        # /pypi/NAME/json: the latest release and its vulnerabilities, for each name here.
        self.projects: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self.asked: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked.append(self.path)
                parts = self.path.strip("/").split("/")
                answer: dict[str, Any] | None = None
                if len(parts) == 4 and f"{parts[1]}=={parts[2]}" in outer.versions:
                    answer = {"info": {}, "vulnerabilities": outer.versions["==".join(parts[1:3])]}
                elif len(parts) == 3 and parts[1] in outer.projects:
                    latest, found = outer.projects[parts[1]]
                    answer = {"info": {"version": latest}, "vulnerabilities": found}
                if answer is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pypi() -> Iterator[FakePyPI]:
    server = FakePyPI()
    yield server
    server.close()


VULN = {
    "id": "GHSA-aaaa-bbbb-cccc",
    "aliases": ["CVE-2026-0001", "PYSEC-2026-1"],
    "summary": "Request smuggling",
    "details": "Long text.",
    "fixed_in": ["3.14.6"],
    "link": "https://osv.dev/vulnerability/GHSA-aaaa-bbbb-cccc",
    "withdrawn": None,
}


@pytest.fixture
def audited(tmp_path: Path) -> Path:
    (tmp_path / "requirements.lock").write_text(
        lock_text(("aiohttp", "3.14.5"), ("torch", "2.13.0+cpu"), ("idna", "3.20"))
    )
    return tmp_path


def run(root: Path, index: str, lines: list[str], **options: Any) -> int:
    return audit.run_audit(root, index=index, say=lines.append, **options)


def audit_text(root: Path, index: str, **options: Any) -> tuple[int, str]:
    lines: list[str] = []
    code = run(root, index, lines, **options)
    return code, "\n".join(lines)


def test_a_known_vulnerability_fails_the_audit(pypi: FakePyPI, audited: Path) -> None:
    pypi.versions = {"aiohttp==3.14.5": [VULN], "torch==2.13.0": [], "idna==3.20": []}
    code, text = audit_text(audited, pypi.url, now=NOW)
    assert code == 1
    assert f"{pypi.url}: 3 of 3 pinned versions checked now" in text
    assert "VULNERABLE: aiohttp 3.14.5: GHSA-aaaa-bbbb-cccc (CVE-2026-0001, PYSEC-2026-1)" in text
    assert "fixed in 3.14.6" in text
    assert "supply-chain/audit-ignore.toml with a reason" in text
    # torch is asked by its public version: PyPI has no page for the local +cpu build.
    assert "/pypi/torch/2.13.0/json" in pypi.asked


def test_an_accepted_vulnerability_needs_a_reason(pypi: FakePyPI, audited: Path) -> None:
    pypi.versions = {"aiohttp==3.14.5": [VULN], "torch==2.13.0": [], "idna==3.20": []}
    ignore = audited / audit.IGNORE_FILE
    ignore.parent.mkdir(parents=True)
    ignore.write_text('[[ignore]]\nid = "CVE-2026-0001"\npackage = "AIOHTTP"\nreason = ""\n')
    lines: list[str] = []
    assert run(audited, pypi.url, lines, now=NOW) == 1
    assert lines == [f"audit: {ignore}: [[ignore]] entry 1 has no reason"]

    reason = "the gateway never runs aiohttp's server; the client path is not affected"
    ignore.write_text(
        f'[[ignore]]\nid = "CVE-2026-0001"\npackage = "AIOHTTP"\nreason = "{reason}"\n'
        '[[ignore]]\nid = "GHSA-gone"\npackage = "idna"\nreason = "fixed long ago"\n'
    )
    lines = []
    assert run(audited, pypi.url, lines, now=NOW) == 0
    text = "\n".join(lines)
    assert f"accepted GHSA-aaaa-bbbb-cccc in aiohttp 3.14.5: {reason}" in text
    assert "entry GHSA-gone (idna) matches nothing now" in text


def test_withdrawn_entries_do_not_count(pypi: FakePyPI, audited: Path) -> None:
    withdrawn = {**VULN, "withdrawn": "2026-11-01T00:00:00Z"}
    pypi.versions = {"aiohttp==3.14.5": [withdrawn], "torch==2.13.0": [], "idna==3.20": []}
    lines: list[str] = []
    assert run(audited, pypi.url, lines, now=NOW) == 0


def test_offline_the_last_known_state_is_used_and_its_age_said(
    pypi: FakePyPI, audited: Path
) -> None:
    pypi.versions = {"aiohttp==3.14.5": [VULN], "torch==2.13.0": [], "idna==3.20": []}
    assert run(audited, pypi.url, [], now=NOW) == 1
    assert (audited / audit.CACHE_FILE).exists()

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    lines: list[str] = []
    # Still a failure: the vulnerability is known, whether or not PyPI answers today.
    assert run(audited, down, lines, now=NOW + timedelta(days=3)) == 1
    text = "\n".join(lines)
    assert f"audit: {down} not reachable" in text
    assert "using the last known state" in text
    assert "known state for 3 of 3 pinned versions, checked 2026-11-30 12:00 UTC" in text
    assert "(the oldest 3 days ago)" in text
    assert "VULNERABLE: aiohttp 3.14.5: GHSA-aaaa-bbbb-cccc" in text


def test_offline_without_any_known_state_warns_and_passes(audited: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    code, text = audit_text(audited, down, now=NOW)
    assert code == 0
    assert f"{down} not reachable" in text
    assert "WARNING: 3 of 3 pinned versions never checked: aiohttp 3.14.5" in text
    assert not (audited / audit.CACHE_FILE).exists()


def test_an_index_that_answers_404_everywhere_is_no_clean_audit(
    pypi: FakePyPI, audited: Path
) -> None:
    # What pip-audit -s pypi reports as "No known vulnerabilities found".
    code, text = audit_text(audited, pypi.url, now=NOW)
    assert code == 0
    assert "answered 404 for every version's JSON" in text
    assert "WARNING: 3 of 3 pinned versions never checked" in text


def test_an_index_serving_only_project_json_answers_for_latest_releases(
    pypi: FakePyPI, audited: Path
) -> None:
    """Some registry proxies (this machine's) serve /pypi/NAME/json but no per-version JSON:
    its vulnerabilities are the latest release's, so they answer for a pin that is it."""
    # An older pin is never taken for clean on the strength of its latest release's answer.
    pypi.projects = {"aiohttp": ("3.15.0", []), "idna": ("3.20", []), "torch": ("2.14.1", [])}
    code, text = audit_text(audited, pypi.url, now=NOW)
    assert code == 0
    assert "1 of 3 pinned versions checked now" in text
    assert "not the latest release (which the project's JSON answers for), for aiohttp" in text
    assert "never checked: aiohttp 3.14.5, torch 2.13.0+cpu" in text
    # The latest release's vulnerabilities are the pin's when it is that release.
    pypi.projects["aiohttp"] = ("3.14.5", [VULN])
    code, text = audit_text(audited, pypi.url, now=NOW)
    assert code == 1
    assert "2 of 3 pinned versions checked now" in text
    assert "VULNERABLE: aiohttp 3.14.5: GHSA-aaaa-bbbb-cccc" in text


def test_a_newer_answer_replaces_an_older_one(pypi: FakePyPI, audited: Path) -> None:
    pypi.versions = {"aiohttp==3.14.5": [VULN], "torch==2.13.0": [], "idna==3.20": []}
    assert run(audited, pypi.url, [], now=NOW, save_snapshot=True) == 1
    snapshot = json.loads((audited / audit.STATE_FILE).read_text())
    assert sorted(snapshot["packages"]) == ["aiohttp==3.14.5", "idna==3.20", "torch==2.13.0+cpu"]
    # The advisory is withdrawn upstream: the next online run knows, and says so offline too.
    pypi.versions["aiohttp==3.14.5"] = []
    assert run(audited, pypi.url, [], now=NOW + timedelta(days=1)) == 0
    down = f"http://127.0.0.1:{free_port()}"
    assert run(audited, down, [], now=NOW + timedelta(days=2)) == 0


def test_only_some_versions_answered(pypi: FakePyPI, audited: Path) -> None:
    pypi.versions = {"aiohttp==3.14.5": [], "idna==3.20": []}
    code, text = audit_text(audited, pypi.url, now=NOW)
    assert code == 0
    assert "2 of 3 pinned versions checked now" in text
    assert "no per-version data (HTTP 404), and not the latest" in text
    assert "answers for), for torch 2.13.0+cpu" in text


def test_an_osv_database_is_audited_offline(audited: Path, tmp_path: Path) -> None:
    database = tmp_path / "osv"
    (database / "idna").mkdir(parents=True)
    (database / "idna" / "PYSEC-2026-9.yaml").write_text(
        "id: PYSEC-2026-9\nsummary: Slow decoding\nmodified: '2026-10-01T00:00:00Z'\n"
        "affected:\n- package: {name: IDNA, ecosystem: PyPI}\n  ranges:\n  - type: ECOSYSTEM\n"
        "    events:\n    - introduced: '0'\n    - fixed: '3.21'\n"
    )
    (database / "torch.json").write_text(
        json.dumps(
            {
                "id": "GHSA-torch",
                "withdrawn": "2026-01-01T00:00:00Z",
                "affected": [{"package": {"name": "torch"}, "versions": ["2.13.0"]}],
            }
        )
    )
    code, text = audit_text(audited, "http://unused", online=False, osv_db=database, now=NOW)
    assert code == 1
    assert "OSV database" in text
    assert "1 record, newest record 2026-10-01 (60 days ago)" in text
    assert "VULNERABLE: idna 3.20: PYSEC-2026-9; fixed in 3.21 [OSV database]" in text


@pytest.mark.parametrize(
    ("events", "versions", "version", "affected"),
    [
        ([{"introduced": "0"}, {"fixed": "3.21"}], [], "3.20", True),
        ([{"introduced": "0"}, {"fixed": "3.21"}], [], "3.21", False),
        ([{"introduced": "2.0"}, {"fixed": "2.5"}, {"introduced": "3.0"}], [], "2.7", False),
        ([{"introduced": "2.0"}, {"fixed": "2.5"}, {"introduced": "3.0"}], [], "3.1", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.4"}], [], "1.4", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.4"}], [], "1.4.1", False),
        ([{"introduced": "0"}, {"fixed": "2.13.1"}], [], "2.13.0+cpu", True),
        ([], ["2.13.0"], "2.13.0+cpu", True),
        ([], ["1.10"], "1.1", False),
    ],
)
def test_osv_ranges(
    events: list[dict[str, str]], versions: list[str], version: str, affected: bool
) -> None:
    ranges = [{"type": "ECOSYSTEM", "events": events}] if events else []
    record = record_from(
        {
            "id": "X",
            "affected": [
                {
                    "package": {"name": "p", "ecosystem": "PyPI"},
                    "ranges": ranges,
                    "versions": versions,
                }
            ],
        }
    )
    assert record is not None
    assert record.affects("p", version) is affected
    assert not record.affects("other", version)


def test_the_osv_loader_skips_other_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# not a record")
    (tmp_path / "a.json").write_text(json.dumps({"id": "A", "affected": []}))
    assert [r.vulnerability.id for r in load_database(tmp_path)] == ["A"]


# --- licences ---------------------------------------------------------------------------


def test_the_licence_list_matches_the_installed_packages() -> None:
    if not PIP_LICENSES.exists():
        pytest.skip(f"pip-licenses is not installed beside {sys.executable} (make install)")
    problems = licenses.license_problems(ROOT, PIP_LICENSES)
    assert not problems, "\n".join(problems)
    text = (ROOT / licenses.OUTPUT).read_text()
    for pin in lockfile.read_lock(ROOT / "requirements.lock").values():
        assert f" {pin.version} |" in text, pin.name


def entry(**fields: str) -> dict[str, str]:
    blank = {"License-Expression": "UNKNOWN", "License-Metadata": "UNKNOWN"}
    return {"Name": "pkg", "Version": "1.0", "License-Classifier": "UNKNOWN", **blank, **fields}


@pytest.mark.parametrize(
    ("fields", "spdx", "source"),
    [
        ({"License-Expression": "mit OR apache-2.0"}, "MIT OR Apache-2.0", "License-Expression"),
        ({"License-Metadata": "BSD-3-Clause"}, "BSD-3-Clause", "License"),
        (
            {"License-Metadata": "MIT License", "License-Classifier": "MIT License"},
            "MIT",
            "classifier",
        ),
        ({"License-Classifier": "BSD License"}, None, ""),
        ({"License-Classifier": "Apache Software License; MIT License"}, None, ""),
        ({"License-Metadata": "MIT License\n\nPermission is hereby granted"}, None, ""),
    ],
)
def test_licences_are_spdx_or_left_for_review(
    fields: dict[str, str], spdx: str | None, source: str
) -> None:
    licence = licenses.classify(entry(**fields), {})
    assert (licence.spdx, licence.source) == (spdx, source)


def test_a_reviewed_licence_fills_the_gap_but_metadata_wins() -> None:
    reviewed = {"pkg": {"spdx": "BSD-3-Clause", "read": "LICENSE: three clauses"}}
    bsd = licenses.classify(entry(**{"License-Classifier": "BSD License"}), reviewed)
    declared = "classifiers: BSD License"
    assert (bsd.spdx, bsd.source, bsd.declared) == ("BSD-3-Clause", "reviewed", declared)
    spdx = licenses.classify(entry(**{"License-Expression": "MIT"}), reviewed)
    assert (spdx.spdx, spdx.source) == ("MIT", "License-Expression")


def test_a_package_without_spdx_licence_is_named_with_the_fix(tmp_path: Path) -> None:
    if not PIP_LICENSES.exists():
        pytest.skip(f"pip-licenses is not installed beside {sys.executable} (make install)")
    # jinja2 declares only "BSD License": without its reviewed entry, the check asks for one.
    (tmp_path / "requirements.lock").write_text(lock_text(("jinja2", "3.1.6"), ("nothere", "1.0")))
    licences, problems = licenses.collect(tmp_path, PIP_LICENSES)
    assert [licence.name.lower() for licence in licences] == ["jinja2"]
    no_spdx = "jinja2 3.1.6 declares no SPDX licence ('classifiers: BSD License')"
    assert problems[0].startswith(no_spdx)
    assert "supply-chain/licenses.toml" in problems[0]
    assert problems[1] == "nothere 1.0 is locked but not installed: run `make install`"


# --- front-end files --------------------------------------------------------------------


def test_the_frontend_record_matches_the_served_files() -> None:
    assert frontend.frontend_problems(ROOT) == []
    text = (ROOT / frontend.RECORD).read_text()
    for folder in ("swagger-ui-dist-5.32.6", "redoc-2.5.3", "fastapi-favicon"):
        assert (ROOT / "docs" / "third-party" / folder / "LICENSE").exists()
        assert f"docs/third-party/{folder}/" in text


def test_a_changed_frontend_file_is_reported(tmp_path: Path) -> None:
    static = tmp_path / "static"
    shutil.copytree(frontend.static_folder(), static)
    (static / "swagger-ui.css").write_bytes(b"changed")
    (static / "favicon.png").unlink()
    (static / "new.js").write_text("x")
    problems = frontend.frontend_problems(ROOT, static, version="9.9.9")
    assert problems[0].startswith(
        f"{frontend.RECORD} describes fastapi-offline==1.7.7, 9.9.9 is installed"
    )
    assert "fastapi_offline/static/new.js is served but not in" in problems[1]
    assert "lists favicon.png, which fastapi_offline/static/ no longer has" in problems[2]
    assert "fastapi_offline/static/swagger-ui.css changed" in problems[3]
    assert len(problems) == 4
