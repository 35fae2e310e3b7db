"""Artifacts of classic versions: read once, checked against the sha256 their registry entry
records, then loaded by their framework. skops loads only the types the entry trusts; joblib
and pickle files (which run code when loaded) only when the entry is explicitly trusted.

Read into memory first and loaded from those bytes, so the file checked is the file loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import io
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlparse

from gateway.classic.signature import Signature

Framework = Literal["skops", "onnx", "joblib", "pickle"]
FRAMEWORKS: tuple[str, ...] = get_args(Framework)
# The v2 metadata's `platform` ("<project>_<format>").
PLATFORMS = {
    "skops": "sklearn_skops",
    "onnx": "onnx_onnxv1",
    "joblib": "sklearn_joblib",
    "pickle": "sklearn_pickle",
}
SUFFIXES = {".skops": "skops", ".onnx": "onnx", ".joblib": "joblib", ".pkl": "pickle"}
PICKLED = ("joblib", "pickle")


class ArtifactProblem(Exception):
    """Why a version cannot serve: said in its ready answer and in its 503s."""


@dataclass(frozen=True, slots=True)
class Artifact:
    uri: str
    sha256: str  # "sha256:<hex>", as the registry records it
    framework: str
    trusted_types: tuple[str, ...] = ()
    trusted: bool = False


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def local_path(uri: str) -> Path:
    """A path or a file:// URI; other schemes are not fetched by the gateway."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ArtifactProblem(
            f"artifact {uri}: only local files (a path or file://) are loaded in process; "
            f"serve it from a v2 server (model: v2/NAME) instead"
        )
    return Path(unquote(parsed.path))


def read_verified(artifact: Artifact) -> bytes:
    path = local_path(artifact.uri)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactProblem(f"artifact {path} cannot be read: {exc.strerror or exc}") from None
    found = sha256_of(data)
    if found != artifact.sha256:
        raise ArtifactProblem(
            f"artifact {path} has {found}, but its registry entry records {artifact.sha256}: "
            f"refused (the file changed since it was registered; register it again if on "
            f"purpose)"
        )
    return data


def load(artifact: Artifact, signature: Signature) -> Any:
    """A runtime for the verified artifact (classic/runtimes.py), or ArtifactProblem."""
    data = read_verified(artifact)
    from gateway.classic import runtimes

    try:
        if artifact.framework == "onnx":
            return runtimes.OnnxRuntime(onnx_session(data), signature)
        model = _estimator(artifact, data)
        return runtimes.SklearnRuntime(model, signature)
    except ArtifactProblem:
        raise
    except Exception as exc:  # a library's own error: the version cannot serve, say why
        raise ArtifactProblem(
            f"artifact {artifact.uri} ({artifact.framework}) does not load: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _estimator(artifact: Artifact, data: bytes) -> Any:
    if artifact.framework == "skops":
        sio = import_skops()
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(artifact.trusted_types))
        if untrusted:
            raise ArtifactProblem(
                f"artifact {artifact.uri} holds types its registry entry does not trust: "
                f"{', '.join(untrusted)} (review them, then register the version again with "
                f"--trust for each)"
            )
        return sio.loads(data, trusted=list(artifact.trusted_types))
    if artifact.framework in PICKLED:
        if not artifact.trusted:
            raise ArtifactProblem(
                f"artifact {artifact.uri} is a {artifact.framework} file, which runs code "
                f"when loaded: refused unless its registry entry is marked trusted "
                f"(register it with --trust-pickle)"
            )
        if artifact.framework == "joblib":
            import joblib

            return joblib.load(io.BytesIO(data))
        import pickle

        return pickle.loads(data)  # trusted, and its sha256 checked
    raise ArtifactProblem(
        f"artifact {artifact.uri}: unknown framework {artifact.framework!r} (one of "
        f"{', '.join(FRAMEWORKS)})"
    )


def onnx_session(data: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Calls run concurrently in worker threads; one thread per call keeps them from
    # oversubscribing the machine's cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


# --- skops without torch ---------------------------------------------------------------------

_blocking = threading.local()


class _NoTorch(importlib.abc.MetaPathFinder):
    """skops lists scikit-learn's estimators at import, which imports every scikit-learn
    module, among them an array-API shim that imports torch when it is installed (as it is
    here, for the local embedding model): ~400 MB and seconds for nothing. In the importing
    thread only, torch is reported missing, which that walk skips."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if getattr(_blocking, "on", False) and fullname.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"{fullname} is not needed by skops", name=fullname)
        return None


@contextlib.contextmanager
def _without_torch() -> Iterator[None]:
    finder = _NoTorch()
    sys.meta_path.insert(0, finder)
    _blocking.on = True
    try:
        yield
    finally:
        _blocking.on = False
        sys.meta_path.remove(finder)


def import_skops() -> Any:
    """`skops.io`, imported without pulling torch in."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    with _without_torch():
        return importlib.import_module("skops.io")


# --- what registering reads from an artifact ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inspected:
    sha256: str
    signature: Signature


def framework_of(path: Path) -> str:
    framework = SUFFIXES.get(path.suffix.lower())
    if framework is None:
        raise ArtifactProblem(
            f"{path}: cannot tell its framework from the name; give --framework "
            f"({', '.join(FRAMEWORKS)})"
        )
    return framework


def inspect(
    path: Path, framework: str, trusted_types: Sequence[str] = (), trusted: bool = False
) -> Inspected:
    """Hash and signature, read from the artifact itself, loaded as it will be served: a
    skops file holding types not trusted (by skops or by `trusted_types`) is refused with
    their names, to be reviewed first."""
    from gateway.classic import runtimes

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactProblem(f"{path}: cannot be read: {exc.strerror or exc}") from None
    artifact = Artifact(str(path), sha256_of(data), framework, tuple(trusted_types), trusted)
    try:
        if framework == "onnx":
            signature = runtimes.onnx_signature(onnx_session(data))
        else:
            signature = runtimes.sklearn_signature(_estimator(artifact, data))
    except ArtifactProblem:
        raise
    except Exception as exc:
        raise ArtifactProblem(
            f"{path} does not load as {framework}: {type(exc).__name__}: {exc}"
        ) from None
    return Inspected(artifact.sha256, signature)
