"""Every runtime dependency is declared and pinned; the API docs need no internet.

The run smoke test (scripts/smoke_run.py, in .ci/run) proves a runtime-only venv really starts;
these catch the cheap mistakes first: an edited .in file whose lock was not recompiled, a
dependency that only the dev requirements bring, a page that loads its assets from a CDN.
"""

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

BASE_DIR = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(path.read_text())}


@pytest.mark.parametrize("name", ["requirements", "requirements-local", "requirements-dev"])
def test_each_lock_pins_what_its_in_file_asks_for(name):
    # Given the direct dependencies in the .in file and the compiled lock beside it
    wanted = _pins(BASE_DIR / f"{name}.in")
    locked = _pins(BASE_DIR / f"{name}.txt")
    # Then every direct dependency is in the lock at the version asked for (else: run `make lock`)
    assert wanted
    assert {pkg: locked.get(pkg) for pkg in wanted} == wanted


def test_every_line_of_the_runtime_lock_is_pinned_exactly():
    requirements = [
        line.strip() for line in (BASE_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert requirements
    assert [line for line in requirements if not PIN.match(line)] == []


def test_packages_imported_but_not_declared_by_our_dependencies_are_in_the_runtime_lock():
    # kombu's Redis transport imports `packaging` without declaring it: without it worker and beat die at start.
    assert "packaging" in _pins(BASE_DIR / "requirements.txt")


def test_the_docker_image_installs_the_runtime_lock():
    assert "pip install -r /tmp/requirements.txt" in (BASE_DIR / "Dockerfile").read_text()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_api_documentation_loads_no_asset_from_another_host(client, url):
    # When the documentation page renders
    response = client.get(url)
    html = response.content.decode()
    # Then it references no other host, and every asset it loads is one of our static files
    assert response.status_code == 200
    assert re.findall(r'(?:src|href)="(https?://[^"]+)"', html) == []
    assets = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
    assert any(asset.endswith(".js") for asset in assets)
    assert [asset for asset in assets if finders.find(asset) is None] == []
