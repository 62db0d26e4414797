"""Run the benchmarks: `make bench` (or `python -m bench [--cards N] [--only NAME]`).

The benchmarks use their own database (the configured one with `_bench` appended), filled once by
`seed_demo --cards N` (100,000 cards by default) and kept between runs. Results go to stdout and
to bench/results.json (figures of the benchmarks run this time replace those of the same name; the
others are kept); record them in bench/README.md.
"""

import argparse
import importlib
import os
import sys
from urllib.parse import urlparse, urlunparse

BENCHMARKS = ["landing", "search", "booking", "metering", "dashboard"]
RESULTS_FILE = os.path.join(os.path.dirname(__file__), "results.json")


def _bench_database_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/") + "_bench"
    return urlunparse(parsed._replace(path=f"/{name}")), name


def _ensure_database(url: str, name: str) -> None:
    import dj_database_url
    import psycopg2
    from psycopg2 import sql

    cfg = dj_database_url.parse(url)
    connection = psycopg2.connect(dbname="postgres", user=cfg["USER"] or "postgres", password=cfg["PASSWORD"] or None,
                                  host=cfg["HOST"] or None, port=cfg["PORT"] or None)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--only", choices=BENCHMARKS, action="append")
    parser.add_argument("--reseed", action="store_true", help="seed again even if the bench database is full")
    parser.add_argument("--rollup-cards", type=int, default=100_000,
                        help="metering: cards whose day of samples (1,440 each) the rollup is timed over (0: skip)")
    parser.add_argument("--rollup-minutes", type=int, default=1, choices=[1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60],
                        help="metering: one sample per card every this many minutes, each window that long "
                             "(1 is what agents send; 10 gives 100,000 cards a day in 14.4 million rows)")
    parser.add_argument("--web-workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                        help="metering: gunicorn workers serving the agent API (default: gunicorn's 2 x cores + 1)")
    args = parser.parse_args()
    from bench import harness

    harness.OPTIONS.update(vars(args))

    from config.env import env_str

    url, name = _bench_database_url(env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/computeflow"))
    _ensure_database(url, name)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from inventory.models import Device

    call_command("migrate", verbosity=0)
    cards = Device.objects.count()
    if args.reseed or abs(cards - args.cards) > args.cards * 0.1:
        print(f"seeding {args.cards} cards into {name} (had {cards}) ...", flush=True)
        call_command("seed_demo", cards=args.cards, seed=7, reset=True)
    print(f"bench database {name}: {Device.objects.count()} devices", flush=True)

    for bench_name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{bench_name}")
        except ModuleNotFoundError:
            print(f"== {bench_name}: not written yet", flush=True)
            continue
        print(f"== {bench_name}", flush=True)
        module.run()
    _write_results()
    return 0


def _write_results() -> None:
    import json

    from bench.harness import RESULTS

    try:
        with open(RESULTS_FILE) as file:
            previous = json.load(file)
    except (OSError, ValueError):
        previous = []
    fresh = {result["name"] for result in RESULTS}
    merged = [result for result in previous if result.get("name") not in fresh] + RESULTS
    with open(RESULTS_FILE, "w") as file:
        json.dump(merged, file, indent=2)
        file.write("\n")
    print(f"{len(RESULTS)} figures written to {RESULTS_FILE}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
