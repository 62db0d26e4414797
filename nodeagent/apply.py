"""Apply the node's desired state: start the buyer's container for each assignment to run, stop it
for each assignment to stop, and report per assignment and card (GET /api/agent/assignments/,
POST /api/agent/assignments/<id>/report/ - the provisioning contract).

The container runtime is the seam: `ContainerRuntime` runs the argv that nodeagent.containers plans
through docker or podman (a subprocess with a timeout); `SimulatedRuntime` (--simulate) runs nothing
and remembers what it "started". The applier's decisions are the same for both:

* desired run, not running here  -> plan_start, run it, wait until the container's SSH server listens
  and check every reserved card is usable, report running (each card healthy); an UnsupportedStack, a runtime error
  or an unusable card -> report failed with a reason the buyer can read (and remove what was created).
* desired run, already running   -> report running if the server does not know yet (an agent that
  restarted finds its containers through `docker ps -a --filter name=computeflow-r`); nothing else.
* desired run, the server says running but the container is gone -> report failed (it exited).
* desired stop                   -> plan_stop (rm --force; "no such container" is already stopped), report stopped.
* a report the server refuses with 409 assignment_closed -> stop the container and report stopped.
* a computeflow container no listed assignment mentions (two polls in a row) -> removed.

Starting a container may pull a large image, which takes minutes: with a real runtime boots run in a
background thread so that heartbeats keep going; their outcome is reported from the agent's loop (one
thread talks to the server). Everything is idempotent: the same desired state applied twice does
nothing the second time, and the server treats a repeated report as a no-op.
"""

import logging
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from nodeagent.client import AgentRefused, ServerUnavailable
from nodeagent.containers import CONTAINER_PREFIX, UnsupportedStack, Workload, container_name, plan_start, plan_stop

logger = logging.getLogger("nodeagent.apply")

RUNTIMES = ("docker", "podman")
# `docker run --detach` pulls the image first; a 15 GB CUDA image on a slow link takes a while.
DEFAULT_START_TIMEOUT = 1800.0
COMMAND_TIMEOUT = 120.0
# sshd -e logs this to stderr once it accepts connections: the workload is up.
SSHD_READY = "Server listening on"
READY_POLL_SECONDS = 2.0
REASON_LIMIT = 500
SIMULATED_BOOT_FAILURE = "simulated boot failure (--simulate-fail-boot): the container runtime could not start the workload"


_missing_endpoint_logged = False


class RuntimeFailed(Exception):
    """The container runtime failed; the message is meant for the buyer's page."""


@dataclass(frozen=True)
class Outcome:
    """What to report for one assignment."""

    state: str  # running | failed | stopped
    reason: str = ""
    devices: tuple[tuple[int, bool], ...] = ()

    def device_list(self) -> list[dict]:
        return [{"index": index, "healthy": healthy} for index, healthy in self.devices]


def _short(text: str) -> str:
    """The last meaningful line of a tool's output, e.g. docker's "Error response from daemon: ..."."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class ContainerRuntime:
    """docker or podman on this machine, through their command line."""

    simulated = False

    def __init__(self, name: str = "docker", *, start_timeout: float = DEFAULT_START_TIMEOUT):
        if name not in RUNTIMES:
            raise ValueError(f"unknown container runtime {name!r} (one of {', '.join(RUNTIMES)})")
        self.name = name
        self.start_timeout = start_timeout

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603 - argv planned by containers.py
        except FileNotFoundError as error:
            raise RuntimeFailed(f"the container runtime {argv[0]!r} is not installed on this node") from error
        except subprocess.TimeoutExpired as error:
            raise RuntimeFailed(f"{argv[0]} {argv[1]} did not finish within {timeout:.0f}s") from error

    def containers(self) -> dict[int, bool]:
        """Computeflow's containers on this machine: reservation id -> running?"""
        result = self._run(
            [self.name, "ps", "--all", f"--filter=name={CONTAINER_PREFIX}", "--format={{.Names}}\t{{.State}}"],
            timeout=COMMAND_TIMEOUT,
        )
        if result.returncode != 0:
            raise RuntimeFailed(f"{self.name} ps failed: {_short(result.stderr) or result.returncode}")
        found = {}
        for line in result.stdout.splitlines():
            name, _, state = line.strip().partition("\t")
            match = re.fullmatch(rf"/?{re.escape(CONTAINER_PREFIX)}(\d+)", name)
            if match:  # the filter matches substrings: computeflow-r4 also finds my-computeflow-r42-copy
                found[int(match.group(1))] = state.strip().lower() == "running"
        return found

    def start(self, workload: Workload) -> None:
        """Start the container and wait until its SSH server listens (BOOT_SCRIPT may install OpenSSH first)."""
        deadline = time.monotonic() + self.start_timeout
        result = self._run(plan_start(workload, runtime=self.name), timeout=self.start_timeout)
        if result.returncode != 0:
            raise RuntimeFailed(f"{self.name} could not start the container: {_short(result.stderr) or f'exit code {result.returncode}'}")
        name = container_name(workload.reservation_id)
        while True:
            running = self.containers().get(workload.reservation_id)
            logs = self._run([self.name, "logs", "--tail=50", name], timeout=COMMAND_TIMEOUT)
            output = f"{logs.stdout or ''}\n{logs.stderr or ''}"
            if not running:
                last = _short(output)
                raise RuntimeFailed("the container exited while starting" + (f": {last}" if last else ""))
            if SSHD_READY in output:
                return
            if time.monotonic() >= deadline:
                raise RuntimeFailed(f"the container's SSH server did not start within {self.start_timeout:.0f}s")
            time.sleep(READY_POLL_SECONDS)

    def stop(self, reservation_id: int) -> None:
        result = self._run(plan_stop(reservation_id, runtime=self.name), timeout=COMMAND_TIMEOUT)
        if result.returncode != 0 and "no such container" not in (result.stderr or "").lower():
            raise RuntimeFailed(f"{self.name} could not remove {container_name(reservation_id)}: {_short(result.stderr)}")


class SimulatedRuntime:
    """--simulate: runs nothing; remembers which reservations it "runs" (busy cards in the usage samples)."""

    simulated = True

    def __init__(self, *, fail_boot: bool = False):
        self.fail_boot = fail_boot
        self.running: set[int] = set()

    def containers(self) -> dict[int, bool]:
        return dict.fromkeys(self.running, True)

    def start(self, workload: Workload) -> None:
        plan_start(workload)  # the same refusals as a real node (UnsupportedStack, bad card lists)
        if self.fail_boot:
            raise RuntimeFailed(SIMULATED_BOOT_FAILURE)
        self.running.add(workload.reservation_id)

    def stop(self, reservation_id: int) -> None:
        self.running.discard(reservation_id)


def workload_of(assignment: dict) -> Workload:
    return Workload(
        reservation_id=int(assignment["reservation"]),
        stack=str(assignment.get("stack") or ""),
        device_indices=tuple(int(device["index"]) for device in assignment.get("devices") or []),
        image=str(assignment.get("image") or ""),
        ssh_public_keys=tuple(assignment.get("ssh_public_keys") or ()),
        ssh_host_port=int(assignment.get("ssh_port") or 2222),
    )


def _indices(assignment: dict) -> list[int]:
    return [int(device["index"]) for device in assignment.get("devices") or []]


class Applier:
    """Applies one node's assignments through a runtime and reports the outcomes through the client."""

    def __init__(
        self,
        *,
        client,
        runtime,
        card_health: Callable[[], dict[int, str]] = dict,
        background: bool | None = None,
    ):
        self.client = client
        self.runtime = runtime
        # card index -> "" when usable, else the problem ("card 3 is missing"); read when a boot finishes.
        self.card_health = card_health
        self.background = (not runtime.simulated) if background is None else background
        self._executor: ThreadPoolExecutor | None = None
        self.booting: dict[int, tuple[dict, Future]] = {}  # assignment id -> (assignment, its boot in the background)
        self.poll_seconds: float | None = None
        self.endpoint_missing = False
        self.to_run: dict[int, tuple[int, ...]] = {}  # reservation id -> its cards, for the assignments to run
        self._unlisted_before: set[int] = set()  # containers no assignment mentioned at the previous poll

    # -- the loop's entry point --------------------------------------------------------------
    def poll(self) -> list[dict] | None:
        """Fetch the desired state and apply it. Returns the assignments, or None when there were none to fetch."""
        self.report_finished_boots()
        try:
            answer = self.client.assignments()
        except AgentRefused as error:
            if error.status_code == 404:
                # A server without provisioning (older version): keep heartbeating and sending usage.
                global _missing_endpoint_logged
                if not _missing_endpoint_logged:  # once per process: the demo runs hundreds of agents
                    # Not the answer's text: a server in debug mode answers a whole HTML page.
                    logger.warning(
                        "the server has no assignments endpoint (HTTP 404 on GET %sassignments/); "
                        "not applying any desired state, heartbeats and usage go on",
                        getattr(self.client, "base", ""),
                    )
                    _missing_endpoint_logged = True
                self.endpoint_missing = True
                return None
            raise
        self.endpoint_missing = False
        if answer.get("poll_seconds"):
            self.poll_seconds = float(answer["poll_seconds"])
        assignments = answer.get("assignments") or []
        self.to_run = {
            int(a["reservation"]): tuple(_indices(a)) for a in assignments if a.get("desired") == "run"
        }
        self.apply(assignments)
        return assignments

    def apply(self, assignments: list[dict]) -> None:
        try:
            here = self.runtime.containers()
        except RuntimeFailed as error:
            logger.error("cannot list the containers: %s; not applying the desired state this round", error)
            return
        for assignment in assignments:
            try:
                self._apply_one(assignment, here)
            except RuntimeFailed as error:
                logger.error("assignment %s: %s; retried on the next poll", assignment.get("id"), error)
            except ServerUnavailable as error:
                logger.warning("assignment %s: %s; retried on the next poll", assignment.get("id"), error)
                return
            except AgentRefused as error:
                if error.status_code in (401, 403):
                    raise
                logger.error("assignment %s: the server refused the report: %s", assignment.get("id"), error)
        self._remove_orphans(assignments, here)

    def _remove_orphans(self, assignments: list[dict], here: dict[int, bool]) -> None:
        """Remove computeflow containers no assignment mentions (the server lists every assignment to run
        and every one to stop until it is reported stopped, so such a container serves nobody - e.g. one
        whose removal failed after a failed boot). Only after two polls in a row, so that a container
        started just before its assignment was listed is never hit."""
        listed = {int(a["reservation"]) for a in assignments} | {int(a["reservation"]) for a, _f in self.booting.values()}
        unlisted = set(here) - listed
        for reservation_id in sorted(unlisted & self._unlisted_before):
            logger.warning("container %s belongs to no assignment of this node; removing it", container_name(reservation_id))
            try:
                self.runtime.stop(reservation_id)
            except RuntimeFailed as error:
                logger.error("%s", error)
        self._unlisted_before = unlisted

    # -- decisions ---------------------------------------------------------------------------
    def _apply_one(self, assignment: dict, here: dict[int, bool]) -> None:
        assignment_id = int(assignment["id"])
        reservation_id = int(assignment["reservation"])
        if assignment_id in self.booting:
            return  # its outcome is reported when the boot finishes
        if assignment.get("desired") == "stop":
            self._stop(assignment)
            self._send(assignment, Outcome("stopped", devices=tuple((i, True) for i in _indices(assignment))))
            return
        if assignment.get("state") in ("failed", "stopped"):
            return  # the server has this outcome; it sets desired stop if anything is left to stop
        running = here.get(reservation_id)
        if running and assignment.get("state") == "running":
            return  # up, and the server knows it
        if assignment.get("state") == "running" and not running:
            if self.runtime.simulated:
                self.runtime.running.add(reservation_id)  # a simulated node that restarted: it "still runs"
                return
            self._send(assignment, self._failed(assignment, "the workload's container is no longer running (it exited or was removed)"))
            return
        if running:
            self._send(assignment, self._checked(assignment))  # an agent that restarted after starting it
            return
        if running is False:
            self._stop(assignment)  # a leftover of an earlier attempt holds the name; start afresh
        if self.background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="boot")
            self.booting[assignment_id] = (assignment, self._executor.submit(self._boot, assignment))
            logger.info("assignment %s: starting reservation %s's workload", assignment_id, reservation_id)
            return
        self._send(assignment, self._boot(assignment))

    def _boot(self, assignment: dict) -> Outcome:
        """Start the workload; never raises (runs in a background thread): failures become an Outcome."""
        try:
            workload = workload_of(assignment)
            self.runtime.start(workload)
        except (UnsupportedStack, ValueError, RuntimeFailed) as error:
            self._stop_quietly(assignment)
            return self._failed(assignment, f"the node could not start the workload: {error}")
        except Exception as error:  # a bug must not leave the boot "in progress" forever
            logger.exception("assignment %s: boot crashed", assignment.get("id"))
            self._stop_quietly(assignment)
            return self._failed(assignment, f"the node agent failed while starting the workload: {type(error).__name__}")
        outcome = self._checked(assignment)
        if outcome.state == "failed":
            self._stop_quietly(assignment)
        return outcome

    def _checked(self, assignment: dict) -> Outcome:
        """Running with every reserved card usable, else failed naming the cards."""
        health = self.card_health() if not self.runtime.simulated else {}
        devices, problems = [], []
        for index in _indices(assignment):
            problem = "" if self.runtime.simulated else health.get(index, f"card {index} is not visible on the node")
            devices.append((index, not problem))
            if problem:
                problems.append(problem)
        if problems:
            return Outcome("failed", "reserved card(s) not usable: " + "; ".join(problems), tuple(devices))
        return Outcome("running", "", tuple(devices))

    def _failed(self, assignment: dict, reason: str) -> Outcome:
        return Outcome("failed", reason[:REASON_LIMIT], tuple((i, False) for i in _indices(assignment)))

    def _stop(self, assignment: dict) -> None:
        """Remove the container; a RuntimeFailed propagates: not stopped, so not reported stopped (retried)."""
        self.runtime.stop(int(assignment["reservation"]))

    def _stop_quietly(self, assignment: dict) -> None:
        """Remove what a failed boot left; a leftover is removed again before the next start."""
        try:
            self.runtime.stop(int(assignment["reservation"]))
        except RuntimeFailed as error:
            logger.error("assignment %s: %s", assignment.get("id"), error)

    def _send(self, assignment: dict, outcome: Outcome) -> None:
        assignment_id = int(assignment["id"])
        try:
            answer = self.client.report(assignment_id, state=outcome.state, reason=outcome.reason, devices=outcome.device_list())
        except AgentRefused as error:
            if error.status_code == 409 and error.code == "assignment_closed" and outcome.state == "running":
                logger.info("assignment %s was closed by the server (%s); stopping it", assignment_id, error.message)
                self._stop(assignment)
                self.client.report(assignment_id, state="stopped", reason="", devices=outcome.device_list())
                return
            raise
        logger.info(
            "assignment %s (reservation %s): reported %s%s -> reservation %s",
            assignment_id, assignment.get("reservation"), outcome.state,
            f" ({outcome.reason})" if outcome.reason else "", answer.get("reservation_status", "?"),
        )

    def report_finished_boots(self) -> None:
        for assignment_id, (assignment, future) in list(self.booting.items()):
            if not future.done():
                continue
            outcome = future.result()
            del self.booting[assignment_id]
            try:
                self._send(assignment, outcome)
            except (ServerUnavailable, AgentRefused) as error:
                # The container is up (or removed); the next poll finds it and reports again.
                logger.warning("assignment %s: could not report %s yet: %s", assignment_id, outcome.state, error)

    def busy_cards(self) -> set[int]:
        """The card indices a running workload holds (what --simulate's usage samples show as busy)."""
        try:
            running = {rid for rid, up in self.runtime.containers().items() if up}
        except RuntimeFailed:
            return set()
        return {index for rid, indices in self.to_run.items() if rid in running for index in indices}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
