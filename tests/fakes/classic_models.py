"""Estimators for tests that scikit-learn does not have: pickled, they load in the gateway's
process (a test's servers run in the test's own process, so this module is importable)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar


class ThreadRecorder:
    """Sums each row, and records the name of the thread that predicted."""

    threads: ClassVar[list[str]] = []
    n_features_in_ = 2

    def predict(self, rows: Any) -> Any:
        ThreadRecorder.threads.append(threading.current_thread().name)
        return rows.sum(axis=1)


class BatchRecorder:
    """Sums each row, and records how many rows each predict was given."""

    sizes: ClassVar[list[int]] = []
    n_features_in_ = 2

    def predict(self, rows: Any) -> Any:
        BatchRecorder.sizes.append(int(rows.shape[0]))
        if (rows < 0).any():
            raise ValueError("negative values")
        return rows.sum(axis=1)
