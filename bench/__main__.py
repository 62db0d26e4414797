"""Run the benchmarks: `make bench` (or `python -m bench [--cards N] [--only NAME]`).

The benchmarks use their own database (the configured one with `_bench` appended), filled once by
`seed_demo --cards N` (100,000 cards by default) and kept between runs. Results go to stdout;
record them in bench/README.md.
"""

import argparse
import importlib
import os
import sys
from urllib.parse import urlparse, urlunparse

BENCHMARKS = ["landing", "search", "booking"]


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
    args = parser.parse_args()

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
