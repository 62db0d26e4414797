"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine.

The compose file is validated against the Compose Specification JSON schema that check-jsonschema
ships (vendor.compose-spec); the rest are checks of our own layout. Every checker is also run on a
broken copy, so that each of them is known to be able to fail.
"""

import ast
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parents[2]
COMPOSE = BASE_DIR / "docker-compose.yml"
DOCKERFILE = BASE_DIR / "Dockerfile"
DOCKERIGNORE = BASE_DIR / ".dockerignore"
ENV_EXAMPLE = BASE_DIR / ".env.example"
SETTINGS = BASE_DIR / "config" / "settings.py"

APP_SERVICES = ("web", "worker", "beat", "demo-agents")  # long-running processes of the one Computeflow image
ONE_SHOT = "migrate"
ENV_READERS = {"env_str", "env_bool", "env_int", "env_list"}  # config/env.py


# ---------------------------------------------------------------------------------------------
# Checkers: each returns a list of problems (empty = fine)
# ---------------------------------------------------------------------------------------------


def schema_problems(path: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    return [] if result.returncode == 0 else [result.stdout + result.stderr]


def _depends_on(service: dict) -> dict[str, dict]:
    raw = service.get("depends_on") or {}
    return {name: {} for name in raw} if isinstance(raw, list) else raw


def dependency_problems(compose: dict) -> list[str]:
    """Every depends_on names a real service and waits for the right thing: a healthy long-running
    service, or the one-shot's successful completion."""
    services = compose["services"]
    problems = []
    for name, service in services.items():
        for dependency, options in _depends_on(service).items():
            if dependency not in services:
                problems.append(f"{name} depends on {dependency!r}, which is not a service")
                continue
            condition = options.get("condition", "service_started")
            expected = "service_completed_successfully" if dependency == ONE_SHOT else "service_healthy"
            if condition != expected:
                problems.append(f"{name} waits for {dependency} with {condition}, not {expected}")
    for name in APP_SERVICES:
        if ONE_SHOT not in _depends_on(services.get(name, {})):
            problems.append(f"{name} does not wait for {ONE_SHOT}")
    return problems


def shared_image_problems(compose: dict) -> list[str]:
    """web, worker, beat (and the one-shot) run one image built once from one build section."""
    services = compose["services"]
    images = {name: (services[name].get("image"), repr(services[name].get("build"))) for name in (*APP_SERVICES, ONE_SHOT) if name in services}
    problems = [f"{name} is missing" for name in (*APP_SERVICES, ONE_SHOT) if name not in services]
    if len(set(images.values())) != 1:
        problems.append(f"the app services do not share one image/build: {images}")
    if any(image is None or build == "None" for image, build in images.values()):
        problems.append(f"the app services need both image and build: {images}")
    return problems


def healthcheck_problems(compose: dict) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        if name == ONE_SHOT:
            if service.get("restart", "no") != "no":
                problems.append(f"{ONE_SHOT} is one-shot but restarts ({service['restart']})")
            continue
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or test in ("NONE", ["NONE"]):
            problems.append(f"{name} has no health check")
    return problems


def settings_env_vars(source: str) -> set[str]:
    """Names of the environment variables a settings module reads (env_* helpers or os.environ)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            is_reader = (isinstance(func, ast.Name) and func.id in ENV_READERS) or (
                isinstance(func, ast.Attribute)
                and (func.attr == "getenv" or (func.attr == "get" and ast.unparse(func.value) == "os.environ"))
            )
            if is_reader and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def env_file_vars(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, _ = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            names.add(key.strip())
    return names


def compose_vars(text: str) -> set[str]:
    """Variables docker-compose.yml interpolates (${VAR}) or hands to a container shell ($${VAR})."""
    return set(re.findall(r"\$\$?\{?([A-Z][A-Z0-9_]*)", text))


def env_problems(*, settings_vars: set[str], example_vars: set[str], compose_text: str) -> list[str]:
    problems = [f"settings read {name} but .env.example does not list it" for name in sorted(settings_vars - example_vars)]
    unread = example_vars - settings_vars - compose_vars(compose_text)
    problems += [f".env.example lists {name} but neither settings nor docker-compose.yml read it" for name in sorted(unread)]
    return problems


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification(tmp_path):
    assert schema_problems(COMPOSE) == []
    # A broken copy (a condition Compose does not know) is refused by the same check
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_completed_successfully", "condition: service_finished", 1))
    assert broken.read_text() != COMPOSE.read_text()
    assert schema_problems(broken) != []


def test_every_depends_on_names_a_real_service_and_waits_for_health_or_completion(compose):
    assert dependency_problems(compose) == []
    # Given a dependency on a service that does not exist, or on the one-shot merely started
    typo = copy.deepcopy(compose)
    typo["services"]["worker"]["depends_on"] = {**typo["services"]["worker"]["depends_on"], "cache": {"condition": "service_healthy"}}
    assert dependency_problems(typo) == ["worker depends on 'cache', which is not a service"]
    started = copy.deepcopy(compose)
    started["services"]["web"]["depends_on"] = dict(started["services"]["web"]["depends_on"], migrate={"condition": "service_started"})
    assert dependency_problems(started) == ["web waits for migrate with service_started, not service_completed_successfully"]
    unhealthy = copy.deepcopy(compose)
    unhealthy["services"]["beat"]["depends_on"] = ["postgres", "redis", "migrate"]
    assert len(dependency_problems(unhealthy)) == 3


def test_web_worker_and_beat_share_one_image(compose):
    assert shared_image_problems(compose) == []
    assert compose["services"]["web"]["image"] == compose["services"]["worker"]["image"] == compose["services"]["beat"]["image"]
    forked = copy.deepcopy(compose)
    forked["services"]["beat"]["build"] = {"context": ".", "dockerfile": "Dockerfile.beat"}
    assert shared_image_problems(forked) != []
    renamed = copy.deepcopy(compose)
    renamed["services"]["worker"]["image"] = "computeflow-worker:latest"
    assert shared_image_problems(renamed) != []


def test_every_service_but_the_one_shot_has_a_health_check(compose):
    assert healthcheck_problems(compose) == []
    assert set(compose["services"]) == {"postgres", "redis", ONE_SHOT, *APP_SERVICES}
    missing = copy.deepcopy(compose)
    del missing["services"]["redis"]["healthcheck"]
    assert healthcheck_problems(missing) == ["redis has no health check"]
    disabled = copy.deepcopy(compose)
    disabled["services"]["worker"]["healthcheck"] = {"disable": True}
    assert healthcheck_problems(disabled) == ["worker has no health check"]
    restarting = copy.deepcopy(compose)
    restarting["services"][ONE_SHOT]["restart"] = "on-failure"
    assert healthcheck_problems(restarting) == [f"{ONE_SHOT} is one-shot but restarts (on-failure)"]


def test_env_example_lists_exactly_what_settings_and_compose_read():
    settings_vars = settings_env_vars(SETTINGS.read_text())
    example_vars = env_file_vars(ENV_EXAMPLE.read_text())
    compose_text = COMPOSE.read_text()
    # The reader sees the variables we know settings read
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"} <= settings_vars
    assert env_problems(settings_vars=settings_vars, example_vars=example_vars, compose_text=compose_text) == []

    # Given settings that read a new variable, the check names it
    grown = settings_env_vars(SETTINGS.read_text() + '\nNEW_FLAG = env_bool("COMPUTEFLOW_NEW_FLAG", False)\n')
    assert env_problems(settings_vars=grown, example_vars=example_vars, compose_text=compose_text) == [
        "settings read COMPUTEFLOW_NEW_FLAG but .env.example does not list it"
    ]
    assert "X_FROM_OS" in settings_env_vars('import os\nA = os.environ.get("X_FROM_OS")\n')
    # Given an .env.example line nothing reads, the check names it
    stale = example_vars | {"OLD_SETTING"}
    assert env_problems(settings_vars=settings_vars, example_vars=stale, compose_text=compose_text) == [
        ".env.example lists OLD_SETTING but neither settings nor docker-compose.yml read it"
    ]


def test_the_services_run_the_documented_processes(compose):
    services = compose["services"]
    assert " ".join(services["web"]["command"]).startswith("gunicorn config.wsgi")
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["demo-agents"]["command"][:3] == ["python", "manage.py", "run_demo_agents"]
    assert "web" in services["demo-agents"]["depends_on"]
    migrate = " ".join(services[ONE_SHOT]["command"])
    assert "manage.py migrate" in migrate and "seed_demo --if-empty" in migrate and "DEMO_DATA" in migrate
    assert int(re.match(r"postgres:(\d+)", services["postgres"]["image"]).group(1)) >= 16
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])
    assert "redis-cli" in str(services["redis"]["healthcheck"]["test"]) and "ping" in str(services["redis"]["healthcheck"]["test"])
    assert "/healthz" in str(services["web"]["healthcheck"]["test"])
    for name in (*APP_SERVICES, ONE_SHOT):
        assert services[name]["env_file"] in (".env", [".env"]), name


def test_the_image_is_python_311_slim_with_the_requirements_and_collected_static_files():
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "pip install -r" in dockerfile and "requirements.txt" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    assert "gunicorn" in dockerfile and "config.wsgi" in dockerfile
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".venv", ".local", ".git"} <= ignored  # no secrets or local state in the image
