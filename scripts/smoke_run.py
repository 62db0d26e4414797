#!/usr/bin/env python3
"""Run smoke test: does `make run` work for a new user on a fresh clone?

    python3 scripts/smoke_run.py              # HEAD of this checkout
    python3 scripts/smoke_run.py --rev REV    # any commit (to show a fix: the old one fails)

Standard library only (it runs before any venv exists). In a temporary `git clone` of the commit,
with DATABASE_URL / REDIS_URL unset (the embedded services):

1. `make install`: a venv from requirements.txt + requirements-local.txt only - no dev requirements
   (checked: pytest must not import) - then `python -m config.importcheck` imports every module;
2. `make run` on a free port: waits for /healthz to report the database, Redis and a Celery worker
   ok, checks that the worker, beat and the demo nodes' simulated agents (manage.py run_demo_agents)
   are still the same live processes 30 s later and /healthz is still ok, then sends SIGINT to the process group (a terminal's Ctrl-C) and checks that every
   process of the run - children, and the daemonized PostgreSQL - is gone;
3. the same with `make run-production` (what docker-compose runs: gunicorn, DJANGO_DEBUG off, static
   files collected and served): also checks that the page's stylesheet and the API docs' assets are
   served from this host and that a 404 shows no debug page.

Exit code 0 when every check passed; otherwise 1, with the failed check and the tail of the log.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAY_UP_SECONDS = 30
START_TIMEOUT = 420  # first start: embedded PostgreSQL initdb, migrations, demo data


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def processes_of(clone: Path) -> dict[int, str]:
    """Every process whose command line or working directory lies in the clone: the run's own tree and
    anything it daemonized (pg_ctl's PostgreSQL is re-parented to init, so it is found by its data dir)."""
    found = {}
    marker = str(clone)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if state == "Z":
            continue  # a zombie has exited; its parent just has not reaped it yet
        if marker in cmdline or cwd.startswith(marker):
            found[int(entry.name)] = cmdline or f"[cwd {cwd}]"
    return found


def celery_processes(processes: dict[int, str], role: str) -> set[int]:
    return {pid for pid, cmd in processes.items() if re.search(rf"-m celery .* {role}\b", cmd)}


def demo_agent_processes(processes: dict[int, str]) -> set[int]:
    return {pid for pid, cmd in processes.items() if re.search(r"manage\.py run_demo_agents\b", cmd)}


def wait_demo_agents(clone: Path, *, timeout: float = 30.0) -> set[int]:
    """The simulated agents start once the web server answers, which may be just after /healthz is ok."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = demo_agent_processes(processes_of(clone))
        if found:
            return found
        time.sleep(1)
    raise SmokeFailure(f"no simulated demo agents process (manage.py run_demo_agents) within {timeout:.0f}s")


def wait_healthy(port: int, launcher: subprocess.Popen, *, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise SmokeFailure(f"the launcher exited with code {launcher.returncode} before /healthz was ok")
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            health = json.loads(body)
            if status == 200 and all(check["ok"] for check in health["checks"].values()):
                return health
            last = f"{status} {body.decode(errors='replace')[:300]}"
        except (OSError, ValueError) as error:
            last = f"{type(error).__name__}: {error}"
        time.sleep(2)
    raise SmokeFailure(f"/healthz was not ok within {timeout:.0f}s; last answer: {last}")


def check_production_pages(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    status, body = http_get(f"{base}/")
    if status != 200:
        raise SmokeFailure(f"the landing page answered {status}")
    stylesheets = re.findall(rb'<link[^>]+href="(/static/[^"]+\.css)"', body)
    if not stylesheets:
        raise SmokeFailure("the landing page links no stylesheet under /static/")
    # The charts' library comes from npm at setup (node_modules/, never committed): collectstatic must find it.
    chart_scripts = re.findall(rb'<script[^>]+src="(/static/vendor/chart\.js/[^"]+)"', body)
    if not chart_scripts:
        raise SmokeFailure("the landing page loads no Chart.js from /static/vendor/ (npm ci not run?)")
    stylesheets += chart_scripts
    status, docs = http_get(f"{base}/api/docs/")
    if status != 200:
        raise SmokeFailure(f"/api/docs/ answered {status}")
    external = re.findall(rb'(?:src|href)="(https?://[^"]+)"', docs)
    if external:
        raise SmokeFailure(f"/api/docs/ loads assets from another host: {external[:3]}")
    assets = re.findall(rb'(?:src|href)="(/static/[^"]+)"', docs)
    if not any(asset.endswith(b".js") for asset in assets):
        raise SmokeFailure("/api/docs/ loads no script from /static/")
    for asset in stylesheets + assets:
        status, _ = http_get(base + asset.decode())
        if status != 200:
            raise SmokeFailure(f"static file {asset.decode()} answered {status} with DJANGO_DEBUG off")
    status, page = http_get(f"{base}/no-such-page-{os.getpid()}/")
    if status != 404 or b"URLconf" in page or b"Traceback" in page:
        raise SmokeFailure(f"a missing page answered {status} or showed the debug page (is DJANGO_DEBUG on?)")
    say(f"production pages: landing page, {len(stylesheets) + len(assets)} static files (API docs included), 404 ok")


def run_once(clone: Path, target: str, env: dict, log_path: Path) -> None:
    port = free_port()
    say(f"make {target} on port {port} (log: {log_path})")
    with open(log_path, "wb") as log:
        # Its own session: SIGINT to its process group is what Ctrl-C in the terminal sends.
        launcher = subprocess.Popen(
            ["make", target], cwd=clone, env={**env, "PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            started = time.monotonic()
            health = wait_healthy(port, launcher, timeout=START_TIMEOUT)
            say(f"/healthz ok after {time.monotonic() - started:.0f}s: {', '.join(health['checks'])}")
            before = processes_of(clone)
            workers, beats = celery_processes(before, "worker"), celery_processes(before, "beat")
            if not workers or not beats:
                raise SmokeFailure(f"no Celery worker or beat process is running: {sorted(before.values())}")
            agents = wait_demo_agents(clone)
            if target == "run-production":
                check_production_pages(port)
            say(f"waiting {STAY_UP_SECONDS}s: worker {sorted(workers)}, beat {sorted(beats)}, demo agents {sorted(agents)}")
            time.sleep(STAY_UP_SECONDS)
            if launcher.poll() is not None:
                raise SmokeFailure(f"the launcher exited with code {launcher.returncode} within {STAY_UP_SECONDS}s")
            after = processes_of(clone)
            for role, pids in (("Celery worker", workers), ("Celery beat", beats), ("demo agents process", agents)):
                if not pids <= set(after):
                    raise SmokeFailure(f"the {role} died within {STAY_UP_SECONDS}s of start")
            wait_healthy(port, launcher, timeout=30)
            say("worker, beat and demo agents alive, /healthz still ok; sending SIGINT (Ctrl-C)")
            everything = processes_of(clone)
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGINT)
        try:
            launcher.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise SmokeFailure("make did not exit within 90s of SIGINT") from None
        deadline = time.monotonic() + 30
        while (left := processes_of(clone)) and time.monotonic() < deadline:
            time.sleep(1)
        if left:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise SmokeFailure(f"processes left behind after Ctrl-C: {left}")
        say(f"stopped: all {len(everything)} processes of the run are gone (make exited {launcher.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="HEAD", help="the commit to clone (default HEAD: uncommitted changes are not in it)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    parser.add_argument(
        "--no-importcheck", action="store_true", help="skip the import check (to see what `make run` itself does)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="computeflow-smoke-"))
    clone = workdir / "computeflow"
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "PORT"}}
    env.pop("VIRTUAL_ENV", None)
    current = "clone"
    try:
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "checkout", "--quiet", args.rev], cwd=clone, check=True)
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True, capture_output=True, text=True)
        say(f"fresh clone of {rev.stdout.strip()} in {clone}")

        current = "install"
        install_log = workdir / "install.log"
        with open(install_log, "wb") as log:
            result = subprocess.run(["make", "install"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode:
            raise SmokeFailure(f"make install failed (log: {install_log})")
        python = str(clone / ".venv" / "bin" / "python")
        if subprocess.run([python, "-c", "import pytest"], capture_output=True).returncode == 0:
            raise SmokeFailure("the runtime venv has pytest: it is not runtime-only")
        if args.no_importcheck:
            importcheck = "print('importcheck: skipped')"
        else:
            # This checkout's importcheck (an older --rev may not have one), run inside the clone.
            importcheck = (REPO / "config" / "importcheck.py").read_text()
        result = subprocess.run([python, "-c", importcheck], cwd=clone, env=env, capture_output=True, text=True)
        if result.returncode:
            raise SmokeFailure(f"modules do not import with the runtime requirements only:\n{result.stderr}")
        say(f"runtime-only venv: {result.stdout.strip()}")

        for target in ("run", "run-production"):
            current = target
            run_once(clone, target, env, workdir / f"{target}.log")
    except SmokeFailure as failure:
        say(f"FAILED ({current}): {failure}")
        log_path = workdir / f"{current}.log"
        if log_path.exists():
            say(f"last lines of {log_path.name}:")
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-40:]), flush=True)
        return 1
    finally:
        for pid in processes_of(clone) if clone.exists() else {}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    say("passed: make run and make run-production come up (demo agents included), stay up and stop cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
