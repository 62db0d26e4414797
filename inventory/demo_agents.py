"""The demo network's simulated node agents: one process for all demo nodes, over HTTP against the
running server, through the public agent API (register, heartbeat, assignments, reports, usage).

Each demo node gets the real node agent (nodeagent.cli.Agent) in --simulate mode with the hardware the
demo data says it has: it registers, heartbeats, polls its assignments and "starts" them (nothing runs;
a boot is reported healthy, or failed with --simulate-fail-boot), and sends usage samples in which the
cards of running assignments are busy and the others idle. Only the transport is shared: one HTTP
session with a few kept-alive connections, and a small pool of threads that step the agents as they
fall due. Agents start spread over the first --spread seconds and each keeps its own rhythm, so the
server sees a steady rate rather than bursts: with the defaults, the demo's ~240 agents send ~2.7
heartbeats, ~2.7 usage batches (one sample per card per heartbeat) and ~4 assignment polls per second.

Which nodes: those of inventory.agent_services.demo_agent_nodes (demo organizations only - a real
provider's node is never kept alive by the demo). Every few seconds the list is read again, and the
agent of a node that left it (listed offline, retired) goes silent. A node whose key is refused (an
operator revoked it) goes silent too: revoking a demo node's key is how to make it fail on purpose.
"""

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import requests
from django.db import close_old_connections
from requests.adapters import HTTPAdapter

from inventory.agent_services import DemoAgentNode, demo_agent_nodes
from nodeagent import cli
from nodeagent.client import AgentClient, AgentRefused, ServerUnavailable
from nodeagent.usage import SimulatedUsage

logger = logging.getLogger("inventory.demo_agents")

RETRY_SECONDS = 15.0  # an agent whose server did not answer tries again this much later


@dataclass
class Settings:
    server: str
    heartbeat_seconds: float = 90.0
    poll_seconds: float = 60.0
    usage_seconds: float = 90.0
    spread_seconds: float = 90.0
    workers: int = 4
    timeout: float = 10.0
    fail_boot: bool = False
    refresh_seconds: float = 10.0


@dataclass
class Entry:
    node: DemoAgentNode
    agent: cli.Agent
    started: bool = False
    silent: bool = False
    failures: int = 0
    seq: int = field(default=0)


class DemoAgents:
    def __init__(self, settings: Settings, nodes: list[DemoAgentNode], *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.workers)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.entries = {node.node_id: Entry(node=node, agent=self._agent(node)) for node in nodes}
        self.heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self.stats = {"steps": 0, "unreachable": 0, "silenced": 0}
        start = self.clock()
        count = max(1, len(nodes))
        for position, node in enumerate(nodes):
            self._schedule(node.node_id, start + settings.spread_seconds * position / count)

    def _agent(self, node: DemoAgentNode) -> cli.Agent:
        s = self.settings
        report = node.report
        argv = [
            "--server", s.server, "--token", node.key,
            "--simulate", f"{report['model_name']}:{report['card_count']}",
            "--interval", str(s.heartbeat_seconds), "--usage-interval", str(s.usage_seconds),
            "--poll-interval", str(s.poll_seconds), "--max-attempts", "1", "--timeout", str(s.timeout),
        ]
        if s.fail_boot:
            argv.append("--simulate-fail-boot")
        args = cli.parse_args(argv)
        client = AgentClient(server=s.server, token=node.key, timeout=s.timeout, session=self.session)
        # The agent's own sleep is only used between retries, which the demo does through its schedule.
        agent = cli.Agent(args, client, sleep=lambda _seconds: None, clock=self.clock, report=lambda: report)
        memory_mib = (node.memory_gb or 80) * 1024
        agent.meter.read = SimulatedUsage(
            report["card_count"], seed=node.node_id, memory_mib=memory_mib, busy=agent.applier.busy_cards
        )
        return agent

    def _schedule(self, node_id: int, due: float) -> None:
        heapq.heappush(self.heap, (due, next(self._seq), node_id))

    # -- one agent's turn (in a pool thread) ---------------------------------------------------
    def step(self, entry: Entry) -> float | None:
        """Run what is due for this agent; returns when it is due next, or None when it goes silent."""
        agent = entry.agent
        try:
            if not entry.started:
                agent.start()
                entry.started = True
                logger.debug("%s: simulated agent started", entry.node.hostname)
                due = min(agent.next_heartbeat, agent.next_poll)
            else:
                due = agent.step()
            entry.failures = 0
            self.stats["steps"] += 1
            return due
        except (cli.GaveUp, ServerUnavailable) as error:
            entry.failures += 1
            self.stats["unreachable"] += 1
            if entry.failures == 1:
                logger.warning("%s: %s; retrying", entry.node.hostname, error)
            return self.clock() + RETRY_SECONDS
        except AgentRefused as error:
            if error.status_code in (401, 403) or error.code == "node_retired":
                logger.warning("%s: the server refused its key (%s); its simulated agent goes silent", entry.node.hostname, error)
                self.stats["silenced"] += 1
                return None
            logger.error("%s: the server refused a request: %s", entry.node.hostname, error)
            return self.clock() + self.settings.heartbeat_seconds
        except Exception:
            logger.exception("%s: simulated agent failed; trying again later", entry.node.hostname)
            return self.clock() + self.settings.heartbeat_seconds

    # -- the list of demo nodes ----------------------------------------------------------------
    def refresh(self) -> None:
        """Silence the agents of nodes that left the demo list (listed offline, retired)."""
        wanted = set(demo_agent_nodes().values_list("pk", flat=True))
        for node_id, entry in self.entries.items():
            if not entry.silent and node_id not in wanted:
                logger.info("%s left the demo's running nodes; its simulated agent goes silent", entry.node.hostname)
                entry.silent = True

    # -- the scheduler -------------------------------------------------------------------------
    def run(self, *, until: Callable[[], bool] = lambda: False, alive_file: Path | None = None) -> None:
        s = self.settings
        inflight: dict[Future, int] = {}
        next_refresh = self.clock() + s.refresh_seconds
        logger.info("simulated agents for %d demo node(s) against %s", len(self.entries), s.server)
        with ThreadPoolExecutor(max_workers=s.workers, thread_name_prefix="demo-agent") as pool:
            try:
                while not until():
                    now = self.clock()
                    if now >= next_refresh:
                        close_old_connections()  # a long-running process: drop a connection the database closed
                        self.refresh()
                        if alive_file is not None:
                            alive_file.touch()
                        next_refresh = now + s.refresh_seconds
                    while self.heap and self.heap[0][0] <= now and len(inflight) < s.workers:
                        _due, _seq, node_id = heapq.heappop(self.heap)
                        entry = self.entries[node_id]
                        if entry.silent:
                            continue
                        inflight[pool.submit(self.step, entry)] = node_id
                    timeout = 0.5
                    if self.heap and len(inflight) < s.workers:
                        timeout = max(0.01, min(timeout, self.heap[0][0] - now))
                    if inflight:
                        done, _pending = wait(list(inflight), timeout=timeout, return_when=FIRST_COMPLETED)
                        for future in done:
                            node_id = inflight.pop(future)
                            due = future.result()
                            if due is not None and not self.entries[node_id].silent:
                                self._schedule(node_id, due)
                            elif due is None:
                                self.entries[node_id].silent = True
                    else:
                        time.sleep(timeout)
            finally:
                for entry in self.entries.values():
                    entry.agent.applier.close()
                self.session.close()
