"""Metering at network scale: usage samples ingested through the agent API, and the hourly rollup.

Ingestion: a real web server (gunicorn, --web-workers processes, on 127.0.0.1) and 8 agent clients
(threads, one node agent key each per node they speak for) POSTing batches of 500 samples to
/api/agent/usage/ - authentication, parsing, validation, reservation lookup, the INSERT ... ON
CONFLICT and the dirty marks included. The request bodies are encoded before the clock starts.
Baseline: COPY of exactly the same rows into the same (empty) partitioned table, from one
connection, in the same run. Targets: >= 50,000 samples/s and >= 30% of COPY.

Rollup: one day of samples (1,440 per card, or one every --rollup-minutes) for --rollup-cards cards,
generated server-side into yesterday's partition; timed: usage_rollup_recompute of that day (INSERT
... ON CONFLICT DO UPDATE into the hourly table) the first time (every row inserted) and again (the
figures unchanged), and usage_rollup_refresh of one hour of every card from its dirty marks (what
beat does). Baselines: a bare count(*) over the same day of rows, and the rollup's aggregate alone.

Everything this bench writes to the usage tables is removed at the start of the next run.
"""

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLIENTS = 8
BATCH = 500
BATCHES_PER_CLIENT = 40
NODES_PER_CLIENT = 4
INGEST_TARGET = 50_000
COPY_RATIO_TARGET = 0.30
BASE_DIR = Path(__file__).resolve().parents[1]


def _truncate_usage() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE marketplace_usagesample, marketplace_usagerollupdirty, marketplace_usagehourly")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(workers: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--log-level", "warning"],
        cwd=BASE_DIR,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/schema/")
            connection.getresponse().read()
            return server, port
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise RuntimeError("the web server did not start")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (from /proc; 0 for one that has gone)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _post(port: int, key: str, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/agent/usage/", body,
                           {"Authorization": f"Agent {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _warm_up(port: int, keys: list[str], workers: int) -> None:
    """Warm every worker up (imports, URL resolver, database connection, prepared statements) before
    the clock starts. The requests must be concurrent: sent one after another, they all go to the
    one worker that happens to be idle first, and the others would pay their first request (about
    a second of CPU each: Django builds its URL resolver and imports every view on it) inside the
    measured run. An empty batch is refused (400) after authentication and parsing; one real sample,
    three years back, is refused after the statement ran."""
    old_sample = json.dumps({"samples": [{
        "sample_id": str(uuid.uuid4()), "device": 1, "window_start": "2023-01-01T00:00:00Z",
        "window_end": "2023-01-01T00:01:00Z", "busy_seconds": 1, "utilization_percent": 1, "memory_used_mib": 1,
        "power_watts": 1}]}).encode()

    def warm(index: int) -> None:
        for n in range(4):
            _post(port, keys[(index + n) % len(keys)], old_sample if n % 2 else b'{"samples": []}')

    threads = [threading.Thread(target=warm, args=(i,)) for i in range(workers * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _batches(nodes: list[tuple[int, list[int]]], keys: dict[int, str], base: datetime):
    """Per client, its (key, body) batches: each node's cards, minute after minute from `base`."""
    per_client = []
    rows = []
    next_minute = {node_id: 0 for node_id, _ in nodes}
    for client in range(CLIENTS):
        batches = []
        for n in range(BATCHES_PER_CLIENT):
            node_id, device_ids = nodes[client * NODES_PER_CLIENT + n % NODES_PER_CLIENT]
            samples = []
            while len(samples) < BATCH:
                start = base + timedelta(minutes=next_minute[node_id])
                next_minute[node_id] += 1
                for device_id in device_ids:
                    utilization = float((device_id * 7 + next_minute[node_id] * 13) % 101)
                    samples.append({
                        "sample_id": str(uuid.uuid4()), "device": device_id,
                        "window_start": start.isoformat().replace("+00:00", "Z"),
                        "window_end": (start + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
                        "busy_seconds": round(0.6 * utilization, 2), "utilization_percent": utilization,
                        "memory_used_mib": 1000 + int(utilization) * 700, "power_watts": 80 + 6 * utilization,
                    })
                    rows.append((device_id, start, start + timedelta(minutes=1), samples[-1]["sample_id"], node_id,
                                 samples[-1]["busy_seconds"], utilization, samples[-1]["memory_used_mib"],
                                 samples[-1]["power_watts"]))
            batches.append((keys[node_id], json.dumps({"samples": samples}).encode()))
        per_client.append(batches)
    return per_client, rows


def _copy(rows: list[tuple]) -> float:
    """COPY the rows into marketplace_usagesample; returns the seconds COPY + COMMIT took."""
    import io

    from django.db import connection, transaction

    received = datetime.now(UTC).isoformat()
    text = io.StringIO("".join(
        f"{d}\t{s.isoformat()}\t{e.isoformat()}\t{i}\t{n}\t\\N\t{b}\t{u}\t{m}\t{p}\t{received}\n"
        for d, s, e, i, n, b, u, m, p in rows
    ))
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            "COPY marketplace_usagesample (device_id, window_start, window_end, sample_id, node_id, reservation_id, "
            "busy_seconds, utilization_percent, memory_used_mib, power_watts, received_at) FROM STDIN", text)
    return time.perf_counter() - started


def _ingestion() -> None:
    from django.db import connection
    from django.db.models import Count

    from bench.harness import OPTIONS, rate, record
    from inventory.agent_services import node_agent_token_create
    from inventory.models import Device, Node
    from marketplace.metering.partitions import usage_partitions_ensure

    nodes_needed = CLIENTS * NODES_PER_CLIENT
    node_ids = list(Node.objects.annotate(cards=Count("devices")).filter(cards=8).order_by("id")
                    .values_list("id", flat=True)[:nodes_needed])
    if len(node_ids) < nodes_needed:
        print(f"needs {nodes_needed} nodes of 8 cards; found {len(node_ids)}", flush=True)
        return
    devices: dict[int, list[int]] = {}
    for device_id, node_id in Device.objects.filter(node_id__in=node_ids).order_by("index").values_list("id", "node_id"):
        devices.setdefault(node_id, []).append(device_id)
    nodes = [(node_id, devices[node_id]) for node_id in node_ids]
    keys = {node_id: node_agent_token_create(node=Node.objects.get(pk=node_id))[1] for node_id in node_ids}
    # Windows from 30 hours ago on: within the retention, never in the future, over two daily partitions.
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    usage_partitions_ensure(days_ahead=1, days_back=2)
    per_client, rows = _batches(nodes, keys, base)
    total = len(rows)

    _truncate_usage()
    copy_seconds = _copy(rows)
    copy_rate = rate(f"baseline: COPY of the same {total:,} rows, one connection", total, copy_seconds)
    _truncate_usage()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE marketplace_usagesample")

    workers = OPTIONS.get("web_workers", 5)
    server, port = _start_server(workers)
    try:
        _warm_up(port, list(keys.values()), workers)
        new = [0] * CLIENTS
        errors: list[str] = []
        barrier = threading.Barrier(CLIENTS + 1)

        def client(index: int) -> None:
            barrier.wait()
            for key, body in per_client[index]:
                status, answer = _post(port, key, body)
                if status != 200:
                    errors.append(f"HTTP {status}: {str(answer)[:200]}")
                    return
                new[index] += answer["new"]

        # CPU per batch of the web workers and of the database's backends (a local server: its
        # processes are readable in /proc), far steadier on a shared machine than samples/s.
        web_pids = _children(server.pid)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                           " AND backend_type = 'client backend'")
            db_pids = [row[0] for row in cursor.fetchall()]
        web_cpu, db_cpu = _cpu_seconds(web_pids), _cpu_seconds(db_pids)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        web_cpu, db_cpu = _cpu_seconds(web_pids) - web_cpu, _cpu_seconds(db_pids) - db_cpu
        batches = total / BATCH
        print(f"  CPU per {BATCH} samples: web workers {web_cpu / batches * 1000:.2f} ms, PostgreSQL "
              f"{db_cpu / batches * 1000:.2f} ms ({len(web_pids)} workers, {len(db_pids)} backends); "
              f"load average {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for error in errors[:3]:
        print(f"  ingestion error: {error}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM marketplace_usagesample")
        stored = cursor.fetchone()[0]
    ingest = rate(f"ingestion over HTTP: {CLIENTS} agents, batches of {BATCH}, {workers} gunicorn workers",
                  sum(new), seconds, baseline=copy_rate, target_per_second=INGEST_TARGET,
                  note=f"{stored:,} rows stored of {total:,} sent; {len(errors)} errors")
    ratio = ingest.ratio() or 0.0
    print(f"  ingestion / COPY = {ratio:.0%} (target >= {COPY_RATIO_TARGET:.0%}: "
          f"{'meets' if ratio >= COPY_RATIO_TARGET else 'MISSES'})", flush=True)
    record("ingestion over HTTP as a share of COPY", ratio, "ratio", baseline=copy_rate.per_second, ratio=ratio,
           target=COPY_RATIO_TARGET, met=ratio >= COPY_RATIO_TARGET)
    _truncate_usage()


def _rollup() -> None:
    from django.db import connection

    from bench.harness import OPTIONS, measure, record
    from marketplace.metering.partitions import usage_partitions_ensure
    from marketplace.metering.services import usage_rollup_recompute, usage_rollup_refresh

    cards = OPTIONS.get("rollup_cards", 100_000)
    every = OPTIONS.get("rollup_minutes", 1)
    per_card = 1440 // every
    if cards <= 0:
        print("  rollup skipped (--rollup-cards 0)", flush=True)
        return
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    usage_partitions_ensure(days_ahead=1, days_back=2)
    _truncate_usage()
    print(f"  generating one day of samples for {cards:,} cards, one every {every} min ({cards * per_card:,} rows) ...",
          flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO marketplace_usagesample (device_id, window_start, window_end, sample_id, node_id, reservation_id,
                busy_seconds, utilization_percent, memory_used_mib, power_watts, received_at)
            SELECT d.id, %(day)s + m * %(every)s, %(day)s + (m + 1) * %(every)s, gen_random_uuid(),
                   d.node_id, NULL, u * 0.6 * %(minutes)s, u, 1000 + u * 700, 80 + 6 * u, now()
            FROM (SELECT id, node_id FROM inventory_device ORDER BY id LIMIT %(cards)s) d
            CROSS JOIN generate_series(0, %(last)s) m
            CROSS JOIN LATERAL (SELECT ((d.id * 7 + m * 13) %% 101)::float8 AS u) x
            """,
            {"day": day, "cards": cards, "every": timedelta(minutes=every), "minutes": every, "last": per_card - 1},
        )
        rows = cursor.rowcount
        cursor.execute("VACUUM ANALYZE marketplace_usagesample")
    print(f"  {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    if rows < cards * per_card:
        print(f"  the bench database has only {rows // per_card:,} cards", flush=True)
    end = day + timedelta(days=1)

    def count_day():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM marketplace_usagesample WHERE window_start >= %s AND window_start < %s",
                           [day, end])
            cursor.fetchone()

    def aggregate_day():
        # the rollup's own SELECT (same grouping and sums, same settings) without writing anything
        from django.db import transaction

        from marketplace.metering.services import _ROLLUP_SELECT

        select = _ROLLUP_SELECT.format(
            source="marketplace_usagesample s WHERE s.window_start >= %(start)s AND s.window_start < %(end)s"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(f"SELECT count(*) FROM ({select}) rolled",  # noqa: S608 - the service's own SQL, no input
                           {"start": day, "end": end, "now": day})
            cursor.fetchone()

    label = f"{rows // per_card:,} cards x 1 day, a sample every {every} min = {rows:,} samples"
    baseline = measure(f"baseline: count(*) over {label}", count_day, runs=3, warmup=1)
    measure(f"baseline: the rollup's aggregate alone (no write), {label}", aggregate_day, runs=3, warmup=1,
            baseline=baseline)
    # The first recompute inserts every hourly row; later ones find the same figures and (since the
    # upsert skips unchanged rows) write nothing, so the two are separate figures.
    started = time.perf_counter()
    written = usage_rollup_recompute(start=day, end=end)
    first_ms = (time.perf_counter() - started) * 1000
    name = f"rollup of the day, first run: {written:,} hourly rows inserted, {label}"
    print(f"{name:<52} {first_ms:8.0f} ms  x{first_ms / baseline.p95_ms:6.1f} of '{baseline.name}'", flush=True)
    record(name, first_ms, "ms", baseline=baseline.p95_ms, ratio=first_ms / baseline.p95_ms)
    measure(f"rollup of the day again, nothing changed (no row written), {label}",
            lambda: usage_rollup_recompute(start=day, end=end), runs=3, warmup=0, baseline=baseline)

    hour = day + timedelta(hours=12)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO marketplace_usagerollupdirty (device_id, hour, marked_at) "
            "SELECT DISTINCT device_id, %s::timestamptz, now() FROM marketplace_usagesample "
            "WHERE window_start >= %s AND window_start < %s",
            [hour, hour, hour + timedelta(hours=1)],
        )
        marked = cursor.rowcount
    started = time.perf_counter()
    done = 0
    while True:
        batch = usage_rollup_refresh()
        done += batch
        if not batch:
            break
    seconds = time.perf_counter() - started
    name = f"rollup refresh of one hour from dirty marks ({marked:,} device-hours, the beat task's path)"
    print(f"{name:<52} {seconds * 1000:8.0f} ms  ({done:,} device-hours)", flush=True)
    record(name, seconds * 1000, "ms")
    _truncate_usage()


def run() -> None:
    _ingestion()
    _rollup()
