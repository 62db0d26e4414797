"""Command line: register this node's hardware, then heartbeat every --interval seconds, send usage
samples (one per card per --usage-interval seconds, see nodeagent/usage.py), and poll the node's
assignments (every poll_seconds the server asks for) to start and stop the buyers' containers through
docker or podman (nodeagent/apply.py). --simulate runs no container and reports as a healthy node would.

Exit codes: 0 done (--once) or stopped; 2 bad arguments; 3 no accelerators; 4 the server refused the
key (wrong, revoked, retired node); 5 the server refused the report; 6 server unreachable
(after --max-attempts).
"""

import argparse
import logging
import os
import random
import sys
import time
from collections.abc import Callable

from nodeagent import __version__
from nodeagent.apply import DEFAULT_START_TIMEOUT, RUNTIMES, Applier, ContainerRuntime, SimulatedRuntime
from nodeagent.client import AgentClient, AgentRefused, RegisterFirst, ServerUnavailable
from nodeagent.detect import NoAccelerators, build_report, detect, simulated
from nodeagent.parsers import parse_simulate
from nodeagent.usage import SimulatedUsage, UsageMeter, read_usage

logger = logging.getLogger("nodeagent")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NO_ACCELERATORS = 3
EXIT_KEY_REFUSED = 4
EXIT_REPORT_REFUSED = 5
EXIT_UNREACHABLE = 6

MAX_BACKOFF_SECONDS = 60.0
DEFAULT_POLL_SECONDS = 15.0  # until the server says otherwise


class GaveUp(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nodeagent",
        description=(
            "Computeflow node agent: reports this machine's accelerators, sends heartbeats and usage, "
            "and starts and stops the buyers' containers on exactly their cards."
        ),
    )
    parser.add_argument("--server", required=True, help="Computeflow base URL, e.g. https://computeflow.example")
    parser.add_argument(
        "--token",
        default=os.environ.get("COMPUTEFLOW_AGENT_TOKEN"),
        help="the node's agent key (cfa_...); default: $COMPUTEFLOW_AGENT_TOKEN, which keeps it out of `ps`",
    )
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between heartbeats (default 30)")
    parser.add_argument("--once", action="store_true", help="register, send one heartbeat, and exit")
    parser.add_argument(
        "--usage-interval",
        type=float,
        default=60.0,
        help="seconds each usage sample covers (default 60); samples are sent after each heartbeat",
    )
    parser.add_argument(
        "--simulate",
        metavar="MODEL:COUNT",
        help="report COUNT cards of MODEL instead of detecting (no accelerators needed)",
    )
    parser.add_argument(
        "--simulate-fail-boot",
        action="store_true",
        help="with --simulate: every boot fails with a clear reason (to see a failed reservation)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="docker",
        help="the container runtime that starts the buyers' workloads (default docker)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        help=f"seconds a container start (image pull included) may take (default {DEFAULT_START_TIMEOUT:g})",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="at least this many seconds between polls of the assignments (default: what the server asks)",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="give up after this many failed attempts to reach the server (default: 5 with --once, else never)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds (default 10)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"nodeagent {__version__}")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token is required (or set COMPUTEFLOW_AGENT_TOKEN)")
    if args.interval < 1:
        parser.error("--interval must be at least 1 second")
    if not 1 <= args.usage_interval <= 3600:
        parser.error("--usage-interval must be between 1 and 3600 seconds")
    if args.simulate_fail_boot and not args.simulate:
        parser.error("--simulate-fail-boot needs --simulate")
    if args.start_timeout < 10:
        parser.error("--start-timeout must be at least 10 seconds")
    if args.poll_interval is not None and args.poll_interval < 1:
        parser.error("--poll-interval must be at least 1 second")
    if args.simulate:
        try:
            args.simulate_model, args.simulate_count = parse_simulate(args.simulate)
        except ValueError as error:
            parser.error(str(error))
    if args.max_attempts is None and args.once:
        args.max_attempts = 5
    return args


def with_retry(call: Callable[[], dict], *, what: str, max_attempts: int | None, sleep=time.sleep) -> dict:
    """Call until the server answers; back off exponentially (1, 2, 4 ... 60 s, with jitter)."""
    attempt = 0
    while True:
        try:
            return call()
        except ServerUnavailable as error:
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise GaveUp(f"{what}: server unreachable after {attempt} attempt(s): {error}") from error
            delay = min(MAX_BACKOFF_SECONDS, 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            logger.warning("%s: server unreachable (%s); retrying in %.1fs", what, error, delay)
            sleep(delay)


def _describe(node: dict) -> str:
    state = f"node {node['id']} ({node['hostname']}) is {node['status']}"
    if node.get("flagged"):
        return f"{state} but FLAGGED, not rentable: {node['mismatch_reason']}"
    return state


def card_health() -> dict[int, str]:
    """This machine's cards by index: "" when usable, else the problem the detector saw."""
    try:
        cards = detect().cards
    except NoAccelerators:
        return {}
    return {card.index: "" if card.healthy else f"card {card.index}: {card.problem or 'not usable'}" for card in cards}


class Agent:
    """One node's agent. The demo's simulated agents (inventory run_demo_agents) run many of these in
    one process, passing their own hardware report, runtime and clock; `python -m nodeagent` runs one."""

    def __init__(
        self,
        args: argparse.Namespace,
        client: AgentClient,
        sleep=time.sleep,
        *,
        clock: Callable[[], float] = time.monotonic,
        runtime=None,
        report: Callable[[], dict] | None = None,
        usage_read=None,
    ):
        self.args = args
        self.client = client
        self.sleep = sleep
        self.clock = clock
        self.last_report: dict | None = None
        self._report = report
        if runtime is None:
            if args.simulate:
                runtime = SimulatedRuntime(fail_boot=getattr(args, "simulate_fail_boot", False))
            else:
                runtime = ContainerRuntime(getattr(args, "runtime", "docker"), start_timeout=getattr(args, "start_timeout", DEFAULT_START_TIMEOUT))
        # --once waits for its boots; a long-running agent boots in the background and keeps heartbeating.
        self.applier = Applier(
            client=client, runtime=runtime, card_health=card_health, background=False if args.once else None
        )
        if usage_read is None:
            usage_read = SimulatedUsage(args.simulate_count, busy=self.applier.busy_cards) if args.simulate else read_usage
        self.meter = UsageMeter(read=usage_read, interval=args.usage_interval)
        self.next_heartbeat = 0.0
        self.next_poll = 0.0

    def current_report(self) -> dict:
        if self._report is not None:
            return self._report()
        if self.args.simulate:
            return build_report(simulated(self.args.simulate_model, self.args.simulate_count))
        return build_report(detect())

    def register(self, report: dict) -> None:
        answer = with_retry(
            lambda: self.client.register(report), what="register", max_attempts=self.args.max_attempts, sleep=self.sleep
        )
        self.last_report = report
        self.meter.set_devices(answer.get("devices"))
        logger.info("registered %d x %s: %s", report["card_count"], report["model_name"], _describe(answer["node"]))

    def heartbeat(self) -> None:
        try:
            answer = with_retry(
                self.client.heartbeat, what="heartbeat", max_attempts=self.args.max_attempts, sleep=self.sleep
            )
        except RegisterFirst:
            logger.info("the server asks for the hardware report again")
            self.register(self.last_report or self.current_report())
            return
        logger.debug("heartbeat: %s", _describe(answer))

    def tick(self) -> None:
        """One heartbeat round: re-detect; register again if the hardware changed, else heartbeat; usage."""
        try:
            report = self.current_report()
        except NoAccelerators as error:
            # Heartbeating now would claim cards the agent cannot see; stay quiet so the node goes offline.
            logger.error("%s - skipping this heartbeat", error)
            return
        if report != self.last_report:
            logger.info("what this machine reports changed; registering again")
            self.register(report)
        else:
            self.heartbeat()
        self.send_usage()

    def send_usage(self) -> None:
        """Close the usage window if it is due, then send what is buffered (kept on failure, same ids)."""
        self.meter.measure()
        if self.meter.buffer:
            totals = self.meter.flush(self.client)
            logger.debug("usage: %s (%d still buffered)", totals, len(self.meter.buffer))

    def poll_assignments(self) -> None:
        """Fetch and apply the node's desired state; an unreachable server is retried at the next poll."""
        try:
            self.applier.poll()
        except ServerUnavailable as error:
            logger.warning("assignments: %s; retrying at the next poll", error)

    def poll_seconds(self) -> float:
        return max(self.applier.poll_seconds or DEFAULT_POLL_SECONDS, getattr(self.args, "poll_interval", None) or 0)

    def step(self) -> float:
        """Do what is due (heartbeat round, assignments poll); returns when the next thing is due."""
        now = self.clock()
        if now >= self.next_heartbeat:
            self.tick()
            self.next_heartbeat = now + self.args.interval
        if now >= self.next_poll:
            self.poll_assignments()
            self.next_poll = now + self.poll_seconds()
        return min(self.next_heartbeat, self.next_poll)

    def start(self) -> None:
        """Register, heartbeat, apply the desired state once, open the first usage window."""
        self.register(self.current_report())
        self.heartbeat()
        self.poll_assignments()
        self.meter.measure()  # opens the first usage window
        now = self.clock()
        self.next_heartbeat = now + self.args.interval
        self.next_poll = now + self.poll_seconds()

    def run(self) -> int:
        self.start()
        if self.args.once:
            return EXIT_OK
        try:
            while True:
                wait = min(self.next_heartbeat, self.next_poll) - self.clock()
                if wait > 0:
                    self.sleep(wait)
                self.step()
        finally:
            self.applier.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s nodeagent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    agent = Agent(args, AgentClient(server=args.server, token=args.token, timeout=args.timeout))
    try:
        return agent.run()
    except NoAccelerators as error:
        logger.error("%s", error)
        return EXIT_NO_ACCELERATORS
    except AgentRefused as error:
        if error.status_code in (401, 403) or error.code == "node_retired":
            logger.error("the server refused the agent key: %s", error)
            return EXIT_KEY_REFUSED
        logger.error("the server refused the report: %s", error)
        return EXIT_REPORT_REFUSED
    except GaveUp as error:
        logger.error("%s", error)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        logger.info("stopped")
        return EXIT_OK
