"""`python -m bench.image_size`: what the container image's Python environment weighs,
measured on an installed environment (no Docker engine needed).

The Dockerfile installs the project's runtime dependencies (not the dev extra) into a virtual
environment that the final stage copies whole. This walks the same closure on the
environment running it (llmops-gateway's requirements, recursively, markers evaluated) and
adds up each distribution's installed files as its RECORD lists them. torch must be the CPU
build here (`torch.__version__` ends in `+cpu`), as in the image.

`--compressed` also writes those files as one gzipped tar (gzip level 6, as Docker compresses
a layer it pushes) into a byte counter, not to disk: about what a registry stores and a node
pulls for the environment's layer. It takes a minute or more (one core).
"""

from __future__ import annotations

import argparse
import gzip
import re
import tarfile
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

PROJECT = "llmops-gateway"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(project: str = PROJECT) -> dict[str, Distribution]:
    """Every distribution the project needs at run time, by canonical name."""
    found: dict[str, Distribution] = {}
    pending = [(project, frozenset[str]())]
    while pending:
        name, extras = pending.pop()
        key = _canonical(name)
        if key in found and not extras:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # a requirement whose marker holds nowhere here
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return found


def installed_bytes(dist: Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


class _Counter:
    """A file object that keeps only how many bytes were written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def compressed_bytes(dists: list[Distribution]) -> int:
    counter = _Counter()
    with (
        gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as packed,
        tarfile.open(fileobj=packed, mode="w|") as archive,
    ):
        for dist in dists:
            for file in dist.files or []:
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    archive.add(path, arcname=str(file), recursive=False)
    return counter.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--compressed", action="store_true", help="also the files' size as one gzipped tar"
    )
    options = parser.parse_args()
    closure = runtime_closure()
    closure.pop(_canonical(PROJECT), None)  # the gateway's own code: ~2 MB, from the source
    sizes = sorted(((installed_bytes(d), n) for n, d in closure.items()), reverse=True)
    total = sum(size for size, _ in sizes)
    mib = 2**20
    print(f"runtime dependencies: {len(sizes)} distributions, {total / mib:,.0f} MiB installed")
    for size, name in sizes[:12]:
        print(f"  {name:28} {size / mib:8,.1f} MiB")
    print(f"  {'(the rest)':28} {sum(s for s, _ in sizes[12:]) / mib:8,.1f} MiB")
    if options.compressed:
        packed = compressed_bytes(list(closure.values()))
        print(f"as one gzipped tar (a registry's layer): {packed / mib:,.0f} MiB")


if __name__ == "__main__":
    main()
