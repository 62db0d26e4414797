"""Import every module of the project, as the web, worker and beat processes may, and the transports they load.

    python -m config.importcheck

The run smoke test (scripts/smoke_run.py) runs this in a venv built from requirements.txt and
requirements-local.txt only, so a module imported late (a task, a view, a management command) that
needs a package only the dev requirements bring fails there instead of in production. Exit code 1 and
one line per module that did not import.
"""

import importlib
import os
import pkgutil
import sys

# The apps and programs that production runs; tests/ and bench/ need the dev requirements by design.
PACKAGES = ["config", "accounts", "inventory", "marketplace", "billing", "frontend", "nodeagent"]
# Loaded by name at run time, so no import statement of ours names them.
RUNTIME_MODULES = [
    "kombu.transport.redis",
    "celery.backends.redis",
    "django_celery_beat.schedulers",
    "gunicorn.app.wsgiapp",
    "whitenoise.storage",
    "psycopg2",
    "drf_spectacular_sidecar",
]


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    failures = []
    names = list(RUNTIME_MODULES)
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names.extend(info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."))
    for name in names:
        if name.endswith("__main__"):
            continue  # a program's entry point runs on import
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - report every module that fails, whatever the reason
            failures.append(f"{name}: {type(error).__name__}: {error}")
    for line in failures:
        print(f"importcheck: {line}", file=sys.stderr)
    print(f"importcheck: {len(names) - len(failures)} of {len(names)} modules imported")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
