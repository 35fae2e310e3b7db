"""The deployment files: the Dockerfile, docker-compose.yml with the configs it mounts, and
deploy/k8s. No Docker engine or cluster runs here, so they are checked the ways that run:
deploy/validate.sh (schemas, docker-compose, promtool, kubectl + kubernetes-validate,
hadolint; `make lint` runs it too), and below, the rules those tools do not know: what the
files say must agree with each other and with the gateway's code."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.api.app import create_app
from gateway.core.settings import Settings
from tests.conftest import ROOT

VENV_BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
REPLICAS = sorted(name for name, service in SERVICES.items() if service.get("build"))
K8S = ROOT / "deploy" / "k8s"
SECRET_WORDS = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)


def test_validation_script_passes() -> None:
    """What `make lint` runs; a Debian tool missing here is skipped with the reason (CI
    installs them, and fails when one is missing)."""
    done = subprocess.run(
        ["bash", "deploy/validate.sh"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "BIN": str(VENV_BIN)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok -- validation done") == 3, done.stdout  # the three schemas
    for line in done.stdout.splitlines():
        if line.startswith("skipped:"):
            print(line)  # shown with -rP: the check that did not run here, and why


# -- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Instruction:
    name: str
    args: str


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The Dockerfile's instructions, stage by stage (continuation lines joined, comments
    dropped, as Docker reads them)."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        name, _, args = pending.partition(" ")
        pending = ""
        if name.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(name.upper(), args.strip()))
    return stages


STAGES = dockerfile_stages((ROOT / "Dockerfile").read_text())
FINAL = STAGES[-1]


def _all(name: str, stage: list[Instruction] | None = None) -> list[str]:
    return [i.args for i in (stage or [i for s in STAGES for i in s]) if i.name == name]


def _pyproject_pin(package: str) -> str:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(rf'"{re.escape(package)}==([^"]+)"', text)
    assert found, f"pyproject.toml pins no {package}"
    return found.group(1)


def test_dockerfile_parser_reads_continuations_and_stages() -> None:
    stages = dockerfile_stages(
        "FROM a:1.2.3 AS x\n# note\nRUN one \\\n    two\nFROM b:4.5.6\nUSER 1\n"
    )
    assert [[(i.name, i.args) for i in s] for s in stages] == [
        [("FROM", "a:1.2.3 AS x"), ("RUN", "one two")],
        [("FROM", "b:4.5.6"), ("USER", "1")],
    ]


def test_dockerfile_is_multi_stage_and_the_final_stage_copies_the_build() -> None:
    assert len(STAGES) >= 2
    build_name = STAGES[0][0].args.split()[-1]
    assert any(args.startswith(f"--from={build_name} ") for args in _all("COPY", FINAL))
    # The final stage installs nothing itself: no pip, no compiler.
    assert not any("pip install" in args for args in _all("RUN", FINAL))


def test_every_base_image_is_pinned_by_exact_tag_or_digest() -> None:
    for image in (stage[0].args.split()[0] for stage in STAGES):
        exact_tag = re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image)
        digest = re.search(r"@sha256:[0-9a-f]{64}$", image)
        assert exact_tag or digest, f"FROM {image}: pin an exact version or a digest"


def test_the_image_runs_as_a_non_root_user() -> None:
    users = _all("USER", FINAL)
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric user lets Kubernetes' runAsNonRoot verify it"
    names = [i.name for i in FINAL]
    assert names.index("USER") < names.index("CMD")


def test_healthcheck_asks_healthz() -> None:
    checks = _all("HEALTHCHECK", FINAL)
    assert len(checks) == 1
    assert "/healthz" in checks[0]
    assert "/healthz" in _routes()


def test_torch_is_the_cpu_build_at_the_projects_pin() -> None:
    pin = _pyproject_pin("torch")
    installs = [args for args in _all("RUN") if re.search(r"\btorch==", args)]
    assert len(installs) == 1, installs
    from_cpu_index = "--index-url https://download.pytorch.org/whl/cpu" in installs[0]
    assert from_cpu_index or f"torch=={pin}+cpu" in installs[0]
    assert f"torch=={pin}" in installs[0]
    # ... before the project's requirements, so they find it installed.
    runs = _all("RUN")
    assert runs.index(installs[0]) < next(i for i, r in enumerate(runs) if "requirements" in r)


def test_no_secret_is_baked_into_the_image() -> None:
    for name in ("ENV", "ARG", "LABEL"):
        for args in _all(name):
            assert not SECRET_WORDS.search(args.split("=")[0]), f"{name} {args}"
            assert not SECRET_WORDS.search(args), f"{name} {args}: a secret belongs at run time"
    for args in _all("COPY"):
        assert ".env" not in args


def test_the_bundled_embedding_model_loads_in_the_build() -> None:
    smoke = [args for args in _all("RUN") if "SentenceEmbedder" in args]
    assert len(smoke) == 1
    assert "HF_HUB_OFFLINE=1" in smoke[0]


@pytest.mark.slow
def test_the_builds_embedding_check_runs_here() -> None:
    """The build's own check (the model loads offline from the installed package), run as
    the Dockerfile runs it, in this environment."""
    run = next(args for args in _all("RUN") if "SentenceEmbedder" in args)
    command = run.split("&&", 1)[1].strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=300, cwd="/", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "embedding model: (1, 384)" in done.stdout


def _routes() -> set[str]:
    """The paths the gateway serves, as its OpenAPI document lists them."""
    settings = Settings(config=ROOT / "config" / "gateway.yaml", master_key="k")
    return set(create_app(settings).openapi()["paths"])


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it: `*` and `?` within one folder name,
    `**` across any number of folders."""
    segments = pattern.strip("/").split("/")
    regex = ""
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += re.escape(segment).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            regex += "" if last else "/"
    return re.compile(regex + r"\Z")


def dockerignore_includes(path: str, patterns: list[str]) -> bool:
    """Whether the build context holds `path`: the last pattern matching the path or one of
    its parent folders wins, and a `!` pattern puts it back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _ignore_regex(pattern[1:] if negated else pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            included = negated
    return included


def test_dockerignore_rules_are_read_as_docker_reads_them() -> None:
    rules = ["*", "!gateway/", "!README.md", "**/__pycache__", ".env"]
    assert dockerignore_includes("gateway/api/app.py", rules)
    assert dockerignore_includes("README.md", rules)
    assert not dockerignore_includes("tests/test_x.py", rules)
    assert not dockerignore_includes("gateway/api/__pycache__/app.pyc", rules)
    assert not dockerignore_includes(".env", rules)


def test_dockerignore_keeps_what_the_build_copies_and_nothing_secret() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        source
        for args in _all("COPY")
        if not args.startswith("--from")
        for source in shlex.split(args)[:-1]
        if not source.startswith("--")
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert dockerignore_includes(source.rstrip("/"), patterns), f"{source} left out"
    for kept_out in (
        ".venv/bin/python",
        ".git/config",
        ".gateway/master_key",
        "data/gateway.db",
        ".env",
        "config/.env",
        "gateway/__pycache__/state.cpython-311.pyc",
        "tests/test_deploy.py",
    ):
        assert not dockerignore_includes(kept_out, patterns), kept_out


# -- docker-compose.yml --------------------------------------------------------------------


def _env_names(mapping: dict[str, Any] | None) -> set[str]:
    return set(mapping or {})


def test_compose_runs_the_documented_topology() -> None:
    assert REPLICAS == ["gateway-1", "gateway-2"]
    images = {name: str(service.get("image", "")) for name, service in SERVICES.items()}
    for kind in ("nginx", "postgres", "redis", "qdrant", "opentelemetry-collector", "jaeger"):
        assert any(kind in image for image in images.values()), kind
    assert any("prometheus" in image for image in images.values())
    for image in images.values():
        # An exact release: PostgreSQL's are MAJOR.MINOR, the others' MAJOR.MINOR.PATCH.
        exact = r":\d+\.\d+\b" if image.startswith("postgres:") else r":v?\d+\.\d+\.\d+"
        assert re.search(exact, image), f"{image}: pin an exact version"


def test_compose_replicas_share_settings_and_secrets_come_from_env() -> None:
    first, second = (SERVICES[name] for name in REPLICAS)
    assert first["environment"] == second["environment"]
    environment = first["environment"]
    settings = set(Settings.model_fields)
    for name in environment:
        assert name.startswith("GATEWAY_")
        assert name.removeprefix("GATEWAY_").lower() in settings, name
    # Secrets are interpolated from .env, never written in the file.
    assert environment["GATEWAY_MASTER_KEY"].startswith("${GATEWAY_MASTER_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in environment["GATEWAY_DATABASE_URL"]
    assert first["env_file"] == ".env"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_every_variable_compose_reads_is_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(\w+)=", example, re.MULTILINE))
    assert used <= documented, used - documented
    # The example carries no secret value.
    for line in example.splitlines():
        if re.match(r"^\w+=", line) and SECRET_WORDS.search(line.split("=")[0]):
            assert line.endswith("="), line


def test_compose_health_checks_and_startup_order() -> None:
    for name, service in SERVICES.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in SERVICES, f"{name} depends on unknown {needed}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[needed], f"{needed} has no health check"
    for name in REPLICAS:
        depends = SERVICES[name]["depends_on"]
        for store in ("postgres", "redis", "qdrant"):
            assert depends[store]["condition"] == "service_healthy", (name, store)
        assert "/readyz" in " ".join(SERVICES[name]["healthcheck"]["test"])
    balancer = SERVICES["lb"]["depends_on"]
    assert {name: c["condition"] for name, c in balancer.items()} == dict.fromkeys(
        REPLICAS, "service_healthy"
    )


def test_compose_volumes_are_named_and_the_config_is_mounted() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    for name in REPLICAS:
        assert "./config:/app/config:ro" in SERVICES[name]["volumes"]
        assert any(v.endswith(":/data") for v in SERVICES[name]["volumes"])


def test_only_the_balancer_is_published_and_uis_stay_on_this_machine() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            if name != "lb":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    assert all("ports" not in SERVICES[name] for name in REPLICAS)


def test_nginx_balances_every_replica_and_keeps_metrics_inside() -> None:
    conf = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.MULTILINE)
    assert sorted(host for host, _ in servers) == REPLICAS
    assert {port for _, port in servers} == {"8080"}
    assert re.search(r"location \^~ /metrics \{\s*return 404;", conf)
    assert "proxy_buffering off;" in conf  # streams pass as they are written
    assert re.search(r"upstream gateway \{[^}]*least_conn;", conf)  # long calls, uneven
    listen = re.search(r"listen (\d+);", conf)
    assert listen
    assert SERVICES["lb"]["ports"][0].endswith(f":{listen.group(1)}")


def test_prometheus_scrapes_every_replica() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "gateway")
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8080" for name in REPLICAS}
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_collector_pipelines_name_defined_components_and_receive_the_gateways_spans() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "otel-collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config.get(kind, {}), f"{kind}: {component} undefined"
    # The gateway sends OTLP/HTTP (gateway/observability/traces.py) to the http receiver.
    endpoint = SERVICES[REPLICAS[0]]["environment"]["GATEWAY_OTLP_ENDPOINT"]
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert endpoint.rsplit(":", 1)[1] == http.rsplit(":", 1)[1]
    exporter = config["exporters"]["otlp/jaeger"]["endpoint"]
    assert exporter.split(":")[0] in SERVICES


# -- deploy/k8s ----------------------------------------------------------------------------


def _k8s_resources() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            found[document["kind"]] = document
    return found


RESOURCES = _k8s_resources()


def test_k8s_has_every_piece() -> None:
    assert set(RESOURCES) >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "NetworkPolicy",
    }


def test_k8s_selectors_and_targets_meet() -> None:
    deployment = RESOURCES["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert RESOURCES["Service"]["spec"]["selector"].items() <= labels.items()
    assert RESOURCES["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    assert RESOURCES["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"].items() <= (
        labels.items()
    )
    target = RESOURCES["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert RESOURCES["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2


def test_k8s_probes_ask_real_routes_and_migrations_run_first() -> None:
    spec = RESOURCES["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    paths = _routes()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    (init,) = spec["initContainers"]
    assert init["command"] == ["gateway", "migrate"]
    from gateway.cli.main import command

    assert "migrate" in command().commands
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == _all("USER", FINAL)[-1].split(":")[0]
    requests = container["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"}


def test_k8s_settings_are_real_settings_and_secrets_are_not_filled_in() -> None:
    settings = set(Settings.model_fields)
    for name in RESOURCES["ConfigMap"]["data"]:
        assert name.removeprefix("GATEWAY_").lower() in settings, name
        assert not SECRET_WORDS.search(name), f"{name} belongs in the Secret"
    secret = RESOURCES["Secret"]["stringData"]
    assert set(secret) >= {"GATEWAY_MASTER_KEY", "PGPASSWORD"}
    assert all(value == "" for value in secret.values()), "no secret value in the repository"


def test_k8s_metrics_stay_internal() -> None:
    ingress_paths = [
        path["path"]
        for rule in RESOURCES["Ingress"]["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert ingress_paths
    assert not any("/metrics".startswith(p.rstrip("/") or "/") for p in ingress_paths)
    policy = RESOURCES["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8080]
    assert all("ipBlock" not in peer for peer in rule["from"])  # nothing from outside


def test_k8s_config_file_passes_config_check(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(K8S / "gateway.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
