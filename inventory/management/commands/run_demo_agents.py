"""Run simulated node agents for the demo network's nodes (see inventory/demo_agents.py).

    python manage.py run_demo_agents --server http://127.0.0.1:8000

`make run` starts it once the web server answers. It issues fresh agent keys for the demo nodes
(revoking the earlier ones), then speaks for them over the agent API until stopped. Only nodes of the
demo organizations (Organization.is_demo, set by seed_demo alone) are touched.
"""

import logging
import time
from pathlib import Path

from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError

from inventory.agent_services import demo_agent_keys_issue, demo_agent_nodes
from inventory.demo_agents import DemoAgents, Settings

IDLE_RECHECK_SECONDS = 60


class Command(BaseCommand):
    help = "Simulated node agents for the demo network, over HTTP against the running server."

    def add_arguments(self, parser):
        parser.add_argument("--server", required=True, help="the running server's base URL, e.g. http://127.0.0.1:8000")
        parser.add_argument("--heartbeat-interval", type=float, default=90.0, help="seconds between a node's heartbeats (default 90)")
        parser.add_argument("--poll-interval", type=float, default=60.0,
                            help="at least this many seconds between a node's assignment polls (default 60)")
        parser.add_argument("--usage-interval", type=float, default=90.0,
                            help="seconds each usage sample covers at least; sent with the heartbeats (default 90)")
        parser.add_argument("--spread", type=float, default=90.0, help="start the agents spread over this many seconds (default 90)")
        parser.add_argument("--workers", type=int, default=4, help="threads (and HTTP connections) shared by all agents (default 4)")
        parser.add_argument("--simulate-fail-boot", action="store_true", help="every boot fails with a clear reason")
        parser.add_argument("--alive-file", type=Path, help="touched every few seconds while running (a health check reads it)")
        parser.add_argument("--run-seconds", type=float, default=None, help="stop after this long (default: run until stopped)")

    def handle(self, *args, **options):
        if options["workers"] < 1 or options["heartbeat_interval"] < 1 or options["poll_interval"] < 1:
            raise CommandError("--workers, --heartbeat-interval and --poll-interval must be at least 1")
        if not 1 <= options["usage_interval"] <= 3600:
            raise CommandError("--usage-interval must be between 1 and 3600 seconds")
        verbosity = options["verbosity"]
        # The agents' own lines (one "registered" per node) only with -v 2; their reports and the
        # runner's warnings always.
        logging.getLogger("nodeagent").setLevel(logging.DEBUG if verbosity >= 3 else logging.INFO if verbosity >= 2 else logging.WARNING)
        logging.getLogger("nodeagent.apply").setLevel(logging.INFO)
        logging.getLogger("inventory.demo_agents").setLevel(logging.INFO)

        started = time.monotonic()

        def expired() -> bool:
            return options["run_seconds"] is not None and time.monotonic() - started >= options["run_seconds"]

        alive_file = options["alive_file"]
        while not demo_agent_nodes().exists():
            if alive_file is not None:
                alive_file.touch()
            self.stdout.write("run_demo_agents: no demo nodes (seed_demo has not run); checking again in a minute")
            if expired():
                return
            time.sleep(min(IDLE_RECHECK_SECONDS, options["run_seconds"] or IDLE_RECHECK_SECONDS))
        nodes = demo_agent_keys_issue()
        self.stdout.write(f"run_demo_agents: fresh agent keys for {len(nodes)} demo node(s); speaking for them at {options['server']}")
        # Never slower than half the server's timeout: one late heartbeat must not take a demo node offline.
        heartbeat = min(options["heartbeat_interval"], max(1.0, django_settings.NODE_HEARTBEAT_TIMEOUT_SECONDS / 2))
        settings = Settings(
            server=options["server"],
            heartbeat_seconds=heartbeat,
            poll_seconds=options["poll_interval"],
            usage_seconds=options["usage_interval"],
            spread_seconds=options["spread"],
            workers=options["workers"],
            fail_boot=options["simulate_fail_boot"],
        )
        try:
            DemoAgents(settings, nodes).run(until=expired, alive_file=alive_file)
        except KeyboardInterrupt:
            self.stdout.write("run_demo_agents: stopped")
