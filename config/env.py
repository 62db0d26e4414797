"""Reading settings from the environment, with the embedded development defaults.

`make run` and `make test` start embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
unset and write their addresses to .local/services.env, so that any other `manage.py` command run
while they are up finds them too. The environment always wins over that file.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"
SERVICES_ENV_FILE = LOCAL_DIR / "services.env"


def _services_file() -> dict[str, str]:
    if not SERVICES_ENV_FILE.exists():
        return {}
    values = {}
    for line in SERVICES_ENV_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def env_str(name: str, default: str = "") -> str:
    if name in os.environ:
        return os.environ[name]
    return _services_file().get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name, "")
    if raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = env_str(name, "")
    return int(raw) if raw.strip() else default


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name, "")
    if not raw.strip():
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]
