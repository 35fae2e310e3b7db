"""The supply chain checks `make lint` runs and the files `make lock` regenerates.

- `lockfile`: requirements.lock (pip-compile, hashed) agrees with pyproject.toml's pins.
- `audit`: the locked versions against known vulnerabilities (PyPI's JSON API when it
  answers, else the last known state), with an ignore file that needs a reason per entry.
- `licenses`: the SPDX licence of every locked package (pip-licenses), docs/licenses.md.
- `frontend`: the Swagger UI / Redoc files served offline match docs/frontend-assets.md.

Run as `python -m tools.supply_chain COMMAND` from the project's root; see `--help`.
"""
