"""Command line: register this node's hardware, then heartbeat every --interval seconds and send
usage samples (one per card per --usage-interval seconds, see nodeagent/usage.py).

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


class GaveUp(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nodeagent",
        description="Computeflow node agent: reports this machine's accelerators and sends heartbeats.",
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


class Agent:
    def __init__(self, args: argparse.Namespace, client: AgentClient, sleep=time.sleep):
        self.args = args
        self.client = client
        self.sleep = sleep
        self.last_report: dict | None = None
        read = SimulatedUsage(args.simulate_count) if args.simulate else read_usage
        self.meter = UsageMeter(read=read, interval=args.usage_interval)

    def current_report(self) -> dict:
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
        """One round of the loop: re-detect; register again if the hardware changed, else heartbeat."""
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

    def run(self) -> int:
        self.register(self.current_report())
        self.heartbeat()
        self.meter.measure()  # opens the first usage window
        if self.args.once:
            return EXIT_OK
        while True:
            self.sleep(self.args.interval)
            self.tick()


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
