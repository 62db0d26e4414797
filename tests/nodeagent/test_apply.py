"""The agent applies its desired state: which container commands it runs and what it reports.

Docker is not available on the machines that run these tests, so the container runtime is replaced
at its boundary only: each test writes a tiny program named `docker` (and `podman`) into tmp_path,
puts it first on PATH, and the agent runs it through subprocess exactly as it would run docker. The
program records its argv and answers like docker does (`run` creates a running container unless the
image is one that "cannot be pulled", `ps` lists them, `rm --force` removes them or says "No such
container"). What is tested is the agent's decisions - what it runs, in which order, what it reports
- not docker; the exact start command lines per vendor are tested in test_containers.py.
"""

import json
import os
import stat
import sys
import textwrap

import pytest

from nodeagent import cli
from nodeagent.apply import SIMULATED_BOOT_FAILURE, Applier, ContainerRuntime, RuntimeFailed, SimulatedRuntime
from nodeagent.client import AgentRefused
from nodeagent.containers import Workload, plan_start
from nodeagent.usage import SimulatedUsage

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl buyer@laptop"

FAKE_DOCKER = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    state_path = os.environ["FAKE_DOCKER_STATE"]
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
    state = json.load(open(state_path)) if os.path.exists(state_path) else {{}}
    command, args = sys.argv[1], sys.argv[2:]
    if command == "run":
        name = next(a.split("=", 1)[1] for a in args if a.startswith("--name="))
        position = 0
        while args[position].startswith("--"):  # options; --gpus takes its value as the next argument
            position += 2 if args[position] == "--gpus" else 1
        image = args[position]
        if image.startswith("broken/"):
            sys.stderr.write("Unable to find image locally\\n")
            sys.stderr.write(f"Error response from daemon: pull access denied for {{image}}\\n")
            sys.exit(125)
        if name in state:
            sys.stderr.write(f'Error response from daemon: Conflict. The container name "/{{name}}" is already in use\\n')
            sys.exit(125)
        state[name] = "exited" if image.startswith("crashing/") else "running"
        if image.startswith("slow/"):  # installs OpenSSH first: listening after two looks at the logs
            state["_wait_" + name] = 2
        if image.startswith("silent/"):  # never gets its SSH server up
            state["_wait_" + name] = 10**9
        print("0123456789ab")
    elif command == "logs":
        name = args[-1]
        if state.get(name) == "running" and state.get("_wait_" + name, 0) > 0:
            state["_wait_" + name] -= 1
            print("Reading package lists...")
        elif state.get(name) == "running":
            print("Server listening on 0.0.0.0 port 22.", file=sys.stderr)
        elif name in state:
            print("sh: 1: exec: /usr/sbin/sshd: not found", file=sys.stderr)
    elif command == "ps":
        for name, status in sorted(state.items()):
            if not name.startswith("_"):
                print(f"{{name}}\\t{{status}}")
    elif command == "rm":
        name = args[-1]
        if name not in state:
            sys.stderr.write(f"Error response from daemon: No such container: {{name}}\\n")
            sys.exit(1)
        del state[name]
        state.pop("_wait_" + name, None)
        print(name)
    json.dump(state, open(state_path, "w"))
    """
)


class Runtime:
    """The fake docker/podman on PATH, its argv log and its containers."""

    def __init__(self, tmp_path, monkeypatch):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "docker.log"
        self.state = tmp_path / "containers.json"
        for name in ("docker", "podman"):
            program = self.bin / name
            program.write_text(FAKE_DOCKER.format(python=sys.executable))
            program.chmod(program.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_DOCKER_LOG", str(self.log))
        monkeypatch.setenv("FAKE_DOCKER_STATE", str(self.state))

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def changes(self) -> list[list[str]]:
        """The commands that change something (everything but `ps` and `logs`)."""
        return [call for call in self.calls() if call[1] not in ("ps", "logs")]

    def containers(self) -> dict:
        found = json.loads(self.state.read_text()) if self.state.exists() else {}
        return {name: status for name, status in found.items() if not name.startswith("_")}


@pytest.fixture
def docker(tmp_path, monkeypatch):
    return Runtime(tmp_path, monkeypatch)


class Server:
    """The agent API as far as the applier uses it: the desired state and the reports it receives."""

    def __init__(self, assignments=(), *, closed=()):
        self.listed = list(assignments)
        self.reports = []
        self.closed = set(closed)

    def assignments(self):
        return {"node": 17, "poll_seconds": 15, "assignments": self.listed}

    def report(self, assignment_id, *, state, reason="", devices):
        self.reports.append({"id": assignment_id, "state": state, "reason": reason, "devices": devices})
        if state == "running" and assignment_id in self.closed:
            raise AgentRefused(409, "assignment_closed", "The reservation was cancelled.")
        # As the contract says: the state is remembered; failed and stopped ones are no longer listed.
        self.listed = [
            {**a, "state": state} for a in self.listed if a["id"] != assignment_id or state == "running"
        ]
        return {"id": assignment_id, "state": state, "desired": "run", "reservation_status": "active"}


def assignment(*, id=501, reservation=42, desired="run", state="pending", stack="cuda", indices=(2, 3), image="nvcr.io/nvidia/pytorch:24.10-py3"):
    return {
        "id": id, "reservation": reservation, "desired": desired, "state": state, "stack": stack,
        "devices": [{"index": i, "serial": f"GPU-{i}"} for i in indices], "image": image,
        "ssh_public_keys": [KEY], "ssh_port": 2201, "deadline": "2026-12-03T08:10:00Z", "ends_at": "2026-12-03T12:00:00Z",
    }


def applier(server, runtime="docker", health=None, background=False):
    healthy = health if health is not None else {i: "" for i in range(8)}
    return Applier(client=server, runtime=ContainerRuntime(runtime), card_health=lambda: healthy, background=background)


def test_a_run_assignment_starts_exactly_the_planned_container_and_reports_every_card_healthy(docker):
    server = Server([assignment()])

    applier(server).poll()

    planned = plan_start(Workload(reservation_id=42, stack="cuda", device_indices=(2, 3), image="nvcr.io/nvidia/pytorch:24.10-py3",
                                  ssh_public_keys=(KEY,), ssh_host_port=2201))
    assert docker.changes() == [planned]
    assert docker.containers() == {"computeflow-r42": "running"}
    assert server.reports == [{"id": 501, "state": "running", "reason": "",
                               "devices": [{"index": 2, "healthy": True}, {"index": 3, "healthy": True}]}]


def test_podman_gets_the_same_command_line(docker):
    server = Server([assignment(stack="rocm", indices=(1,), image="rocm/pytorch:latest")])

    applier(server, runtime="podman").poll()

    assert docker.changes()[0][:2] == ["podman", "run"]
    assert all(call[0] == "podman" for call in docker.calls())
    assert server.reports[0]["state"] == "running"


def test_applying_the_same_desired_state_again_runs_nothing_new_even_after_a_restart(docker):
    # Given an assignment the agent started and reported
    server = Server([assignment()])
    applier(server).poll()
    started = docker.changes()
    # When the server lists it as running and the agent polls again
    server.listed = [assignment(state="running")]
    applier(server).poll()
    # Then nothing is started or reported again
    assert docker.changes() == started
    assert len(server.reports) == 1
    # And an agent that restarted before its report reached the server reports the running container
    # it finds (docker ps -a), without starting a second one
    server.listed = [assignment(state="pending")]
    applier(server).poll()
    assert docker.changes() == started
    assert [report["state"] for report in server.reports] == ["running", "running"]


def test_a_stop_assignment_removes_the_container_and_reports_stopped_also_when_it_is_already_gone(docker):
    server = Server([assignment()])
    applier(server).poll()

    server.listed = [assignment(desired="stop", state="running")]
    applier(server).poll()
    assert docker.changes()[-1] == ["docker", "rm", "--force", "computeflow-r42"]
    assert docker.containers() == {}
    assert server.reports[-1]["state"] == "stopped"

    # the report was lost: the assignment is listed again, the container is already gone
    server.listed = [assignment(desired="stop", state="running")]
    applier(server).poll()
    assert docker.changes()[-1] == ["docker", "rm", "--force", "computeflow-r42"]
    assert [report["state"] for report in server.reports] == ["running", "stopped", "stopped"]


def test_an_image_that_cannot_be_pulled_is_a_failed_boot_with_dockers_reason(docker):
    server = Server([assignment(image="broken/nothing:1")])

    applier(server).poll()

    [report] = server.reports
    assert report["state"] == "failed"
    assert "pull access denied for broken/nothing:1" in report["reason"]
    assert report["devices"] == [{"index": 2, "healthy": False}, {"index": 3, "healthy": False}]
    assert docker.containers() == {}


def test_a_container_that_exits_at_once_is_a_failed_boot_and_is_removed(docker):
    server = Server([assignment(image="crashing/entrypoint:1")])

    applier(server).poll()

    assert server.reports[0]["state"] == "failed"
    assert "exited while starting: sh: 1: exec: /usr/sbin/sshd: not found" in server.reports[0]["reason"]
    assert docker.changes()[-1] == ["docker", "rm", "--force", "computeflow-r42"]
    assert docker.containers() == {}


def test_a_stack_the_agent_cannot_map_fails_without_running_anything(docker):
    server = Server([assignment(stack="birensupa")])

    applier(server).poll()

    assert not [call for call in docker.changes() if call[1] == "run"]
    assert server.reports[0]["state"] == "failed"
    assert "no container device mapping for the 'birensupa' software stack" in server.reports[0]["reason"]


def test_a_reserved_card_that_is_not_usable_fails_the_boot_naming_the_card(docker):
    server = Server([assignment(indices=(2, 3))])

    applier(server, health={2: "", 3: "card 3: ECC errors"}).poll()

    report = server.reports[0]
    assert report["state"] == "failed"
    assert "card 3: ECC errors" in report["reason"]
    assert report["devices"] == [{"index": 2, "healthy": True}, {"index": 3, "healthy": False}]
    assert docker.containers() == {}


def test_a_running_report_the_server_refuses_as_closed_stops_the_container(docker):
    server = Server([assignment()], closed={501})

    applier(server).poll()

    assert docker.changes()[-1] == ["docker", "rm", "--force", "computeflow-r42"]
    assert docker.containers() == {}
    assert [report["state"] for report in server.reports] == ["running", "stopped"]


def test_a_workload_that_died_after_it_ran_is_reported_failed(docker):
    server = Server([assignment(state="running")])

    applier(server).poll()

    assert server.reports[0]["state"] == "failed"
    assert "no longer running" in server.reports[0]["reason"]


def test_a_leftover_container_of_an_earlier_attempt_is_removed_before_starting_again(docker):
    docker.state.write_text(json.dumps({"computeflow-r42": "exited"}))
    server = Server([assignment()])

    applier(server).poll()

    assert [call[1] for call in docker.changes()] == ["rm", "run"]
    assert server.reports[0]["state"] == "running"


def test_boots_run_in_the_background_and_are_reported_from_the_loop(docker):
    server = Server([assignment()])
    agent_applier = applier(server, background=True)

    agent_applier.poll()
    _assignment, future = agent_applier.booting[501]
    future.result(timeout=30)
    assert server.reports == []  # nothing reported from the boot thread
    agent_applier.poll()  # the next poll reports it, and does not start it again

    assert [report["state"] for report in server.reports] == ["running"]
    assert [call[1] for call in docker.changes()] == ["run"]
    agent_applier.close()


def test_a_runtime_that_is_not_installed_is_a_readable_failure(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    server = Server([assignment()])

    applier(server).poll()

    assert server.reports == []  # cannot even list containers: nothing decided, nothing reported


def test_a_server_without_the_assignments_endpoint_is_tolerated():
    class OldServer(Server):
        def assignments(self):
            raise AgentRefused(404, "error", "Not Found")

    server = OldServer()
    sim = Applier(client=server, runtime=SimulatedRuntime())
    assert sim.poll() is None
    assert sim.poll() is None
    assert sim.endpoint_missing


def test_simulate_runs_nothing_and_reports_a_healthy_node(docker):
    server = Server([assignment()])
    runtime = SimulatedRuntime()

    sim = Applier(client=server, runtime=runtime)
    sim.poll()

    assert docker.calls() == []
    assert server.reports[0]["state"] == "running"
    assert sim.busy_cards() == {2, 3}
    server.listed = [assignment(desired="stop", state="running")]
    sim.poll()
    assert server.reports[-1]["state"] == "stopped"
    assert sim.busy_cards() == set()


def test_simulate_fail_boot_fails_every_boot_with_a_clear_reason():
    server = Server([assignment(), assignment(id=502, reservation=43, indices=(0,))])

    Applier(client=server, runtime=SimulatedRuntime(fail_boot=True)).poll()

    assert [(r["id"], r["state"], r["reason"]) for r in server.reports] == [
        (501, "failed", f"the node could not start the workload: {SIMULATED_BOOT_FAILURE}"),
        (502, "failed", f"the node could not start the workload: {SIMULATED_BOOT_FAILURE}"),
    ]


def test_simulated_usage_shows_busy_cards_for_running_assignments_and_idle_otherwise():
    busy = {2, 3}
    read = SimulatedUsage(8, seed=3, busy=lambda: busy)
    for _ in range(5):
        readings = read()
    assert all(readings[i].utilization_percent >= 60 for i in busy)
    assert all(readings[i].utilization_percent <= 5 for i in set(range(8)) - busy)
    busy.clear()
    readings = read()
    assert all(reading.utilization_percent <= 5 for reading in readings.values())


# -- command line ------------------------------------------------------------------------------


def test_the_runtime_is_docker_unless_podman_is_asked_for():
    assert cli.parse_args(["--server", "http://x", "--token", "cfa_k"]).runtime == "docker"
    args = cli.parse_args(["--server", "http://x", "--token", "cfa_k", "--runtime", "podman"])
    agent = cli.Agent(args, Server())
    assert isinstance(agent.applier.runtime, ContainerRuntime)
    assert agent.applier.runtime.name == "podman"
    assert agent.applier.background


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runtime", "containerd"], "invalid choice"),
        (["--simulate-fail-boot"], "--simulate-fail-boot needs --simulate"),
        (["--poll-interval", "0"], "--poll-interval must be at least 1 second"),
        (["--start-timeout", "1"], "--start-timeout must be at least 10 seconds"),
    ],
)
def test_bad_flags_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(["--server", "http://x", "--token", "cfa_k", *argv])
    assert exited.value.code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_simulate_fail_boot_gives_the_agent_a_failing_simulated_runtime():
    args = cli.parse_args(["--server", "http://x", "--token", "cfa_k", "--simulate", "H100 SXM5 80GB:8", "--simulate-fail-boot"])
    agent = cli.Agent(args, Server())
    assert isinstance(agent.applier.runtime, SimulatedRuntime)
    assert agent.applier.runtime.fail_boot


def test_a_container_no_assignment_mentions_is_removed_after_two_polls(docker):
    # Given a container of reservation 7 that nothing lists (a failed boot whose removal failed)
    docker.state.write_text(json.dumps({"computeflow-r7": "running"}))
    server = Server([assignment()])
    agent_applier = applier(server)

    agent_applier.poll()
    assert "computeflow-r7" in docker.containers()  # not at the first sight
    agent_applier.poll()

    assert docker.containers() == {"computeflow-r42": "running"}
    assert ["docker", "rm", "--force", "computeflow-r7"] in docker.changes()


def test_a_stop_that_fails_is_not_reported_and_does_not_hold_up_the_other_assignments(docker):
    # Given a container the runtime cannot remove (its stop raises as ContainerRuntime.stop does)
    server = Server([assignment(id=500, reservation=41, desired="stop", state="running"), assignment()])
    agent_applier = applier(server)
    docker.state.write_text(json.dumps({"computeflow-r41": "running"}))
    remove = agent_applier.runtime.stop

    def stop(reservation_id):
        if reservation_id == 41:
            raise RuntimeFailed("docker could not remove computeflow-r41: device or resource busy")
        remove(reservation_id)

    agent_applier.runtime.stop = stop
    agent_applier.poll()

    assert [(r["id"], r["state"]) for r in server.reports] == [(501, "running")]
    assert "computeflow-r41" in docker.containers()


def test_running_is_reported_only_once_the_containers_ssh_server_listens(docker, monkeypatch):
    monkeypatch.setattr("nodeagent.apply.READY_POLL_SECONDS", 0.01)
    server = Server([assignment(image="slow/ubuntu:24.04")])

    applier(server).poll()

    assert [call[1] for call in docker.calls()].count("logs") == 3  # two while OpenSSH installs, then ready
    assert server.reports[0]["state"] == "running"


def test_a_container_whose_ssh_server_never_starts_fails_at_the_start_timeout_and_is_removed(docker, monkeypatch):
    monkeypatch.setattr("nodeagent.apply.READY_POLL_SECONDS", 0.01)
    server = Server([assignment(image="silent/ubuntu:24.04")])
    slow = Applier(client=server, runtime=ContainerRuntime("docker", start_timeout=0.5), card_health=dict, background=False)

    slow.poll()

    assert server.reports[0]["state"] == "failed"
    assert "SSH server did not start within" in server.reports[0]["reason"]
    assert docker.containers() == {}
