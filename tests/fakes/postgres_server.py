"""A throwaway PostgreSQL server, for tests that must stop, hang or kill a database.

Never break the machine's own server (a user may be running it): start one of these instead.

    with postgres_server() as pg:        # initdb in a temp dir, started on a free port
        engine = make_engine(pg.url)      # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        pg.pause()                        # SIGSTOP: accepts connections, never answers
        pg.resume()                       # SIGCONT
        pg.stop()                         # fast shutdown: connections refused
        pg.start()                        # same data, same port
    # stopped (even if paused) and its directory removed

PostgreSQL refuses to run as root. As root, initdb and postgres run as the `postgres` OS user
(`runuser`) in a directory it owns. When neither is possible (no binaries, root without a
`postgres` user) the test is skipped with the reason, or fails when CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "postgres"
START_TIMEOUT = 60.0


def _unavailable(reason: str) -> None:
    message = f"a throwaway PostgreSQL cannot be started: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def find_bin_dir() -> Path | None:
    """Where initdb and postgres are: $PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the postmaster's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after it.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie is not: whoever adopted the daemon may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in `root`, served on 127.0.0.1:`port`."""

    bin_dir: Path
    root: Path
    port: int = field(default_factory=_free_port)
    run_as: str | None = None  # an OS user to run the binaries as (when we are root)
    log_path: Path = field(init=False)
    _paused: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database (superuser, trust auth)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @property
    def libpq_url(self) -> str:
        """The same for psycopg/libpq directly."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _command(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def initdb(self) -> None:
        subprocess.run(
            self._command(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Starts the server (again) and waits until it accepts queries.

        Through `pg_ctl`, so the postmaster is nobody's child here: `runuser` would otherwise
        stay its parent and, seeing it stopped by pause(), stop itself too (job control)."""
        if self.postmaster_pid() is not None:
            return
        options = [
            f"-p {self.port}",
            f"-k {self.root}",
            "-c listen_addresses=127.0.0.1",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=60",
            "-c shared_buffers=16MB",
        ]
        subprocess.run(
            self._command(
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
            ),
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT + 10,
            start_new_session=True,  # a Ctrl-C of the test run is not also a fast shutdown
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.libpq_url, connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"throwaway PostgreSQL did not start ({exc}):\n{self.log()}"
                    ) from None
                time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def pause(self) -> None:
        """SIGSTOPs the postmaster, then every backend: connections are still accepted by the
        kernel (and open ones stay open), but nothing ever answers, as with a hung host."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("the throwaway PostgreSQL is not running")
        os.kill(pid, signal.SIGSTOP)  # first, so no new backend is forked meanwhile
        self._paused = [pid, *_children(pid)]
        for child in self._paused[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in reversed(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused = []

    def stop(self, mode: str = "fast") -> None:
        """Shuts the server down (`fast`: SIGINT, `immediate`: SIGQUIT); new connections are
        refused until start()."""
        self.resume()
        pid = self.postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        deadline = time.monotonic() + 60
        while self.postmaster_pid() is not None and _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        # A postmaster that died without cleaning up leaves its pid file behind.
        with contextlib.suppress(FileNotFoundError):
            if not _alive(pid):
                (self.data_dir / "postmaster.pid").unlink()


def _make_root(run_as: str | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="gw-throwaway-pg-"))
    if run_as is not None:
        shutil.chown(root, user=run_as, group=None)
    return root


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh, started PostgreSQL; stopped and deleted afterwards, whatever the test did."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable("initdb/postgres not found (install PostgreSQL's server package)")
        raise AssertionError("unreachable")
    run_as = None
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(SUPERUSER)
        except KeyError:
            _unavailable("running as root and there is no 'postgres' OS user to run it as")
        if shutil.which("runuser") is None:
            _unavailable("running as root and `runuser` is missing")
        run_as = SUPERUSER
    root = _make_root(run_as)
    server = PostgresServer(bin_dir, root, run_as=run_as)
    try:
        try:
            server.initdb()
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            _unavailable(f"initdb failed: {exc} {detail.decode(errors='replace')}")
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
