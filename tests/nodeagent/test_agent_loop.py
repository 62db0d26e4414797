"""The agent's loop with a fake server: register, heartbeat, re-register when the hardware changes,
poll the assignments beside the heartbeat."""

import pytest

from nodeagent import cli
from nodeagent.client import RegisterFirst


class FakeServer:
    def __init__(self, heartbeat_answers=None, poll_seconds=5):
        self.calls = []
        self.heartbeat_answers = list(heartbeat_answers or [])
        self.poll_seconds = poll_seconds

    def assignments(self):
        self.calls.append(("assignments", None))
        return {"node": 1, "poll_seconds": self.poll_seconds, "assignments": []}

    def register(self, report):
        self.calls.append(("register", report["card_count"]))
        return {"node": {"id": 1, "hostname": "n1", "status": "online", "flagged": False, "mismatch_reason": ""}}

    def heartbeat(self):
        self.calls.append(("heartbeat", None))
        if self.heartbeat_answers:
            answer = self.heartbeat_answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
        return {"id": 1, "hostname": "n1", "status": "online", "flagged": False, "mismatch_reason": ""}


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def stop_after(rounds: int, clock=None):
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if clock is not None:
            clock.now += seconds
        if len(slept) > rounds:
            raise KeyboardInterrupt

    return sleep, slept


def make_agent(server, sleep, simulate="H100 SXM5 80GB:8", clock=None):
    args = cli.parse_args(["--server", "http://x", "--token", "cfa_k", "--simulate", simulate, "--interval", "5"])
    return cli.Agent(args, server, sleep=sleep, clock=clock or FakeTime())


def test_the_agent_registers_once_then_heartbeats_and_polls_its_assignments_every_interval():
    server = FakeServer(poll_seconds=5)
    clock = FakeTime()
    sleep, slept = stop_after(3, clock)
    agent = make_agent(server, sleep, clock=clock)

    with pytest.raises(KeyboardInterrupt):
        agent.run()

    assert server.calls == [("register", 8)] + [("heartbeat", None), ("assignments", None)] * 4
    assert slept == [5.0] * 4


def test_the_agent_polls_as_often_as_the_server_asks_between_heartbeats():
    # Given a server that wants a poll every 2.5 s and heartbeats every 5 s
    server = FakeServer(poll_seconds=2.5)
    clock = FakeTime()
    sleep, slept = stop_after(4, clock)
    agent = make_agent(server, sleep, clock=clock)

    with pytest.raises(KeyboardInterrupt):
        agent.run()

    # Then two polls fall between heartbeats
    polls_then = [name for name, _ in server.calls[1:]]
    assert polls_then == ["heartbeat", "assignments", "assignments", "heartbeat", "assignments", "assignments", "heartbeat", "assignments"]
    assert slept == [2.5] * 5


def test_a_change_in_what_the_machine_reports_is_registered_again():
    # given an agent that registered 8 cards
    server = FakeServer()
    clock = FakeTime()
    sleep, _slept = stop_after(2, clock)
    agent = make_agent(server, sleep, clock=clock)
    reports = iter([8, 8, 7])
    original = agent.current_report

    def current_report():
        report = original()
        report["card_count"] = next(reports, 7)
        return report

    agent.current_report = current_report

    # when a card disappears between two rounds
    with pytest.raises(KeyboardInterrupt):
        agent.run()

    # then the agent registers the new count instead of heartbeating
    assert [call for call in server.calls if call[0] != "assignments"] == [
        ("register", 8), ("heartbeat", None), ("heartbeat", None), ("register", 7)
    ]


def test_a_server_that_lost_the_report_gets_it_again():
    server = FakeServer(heartbeat_answers=[RegisterFirst(409, "register_first", "Register first.")])
    agent = make_agent(server, sleep=lambda _s: None)
    agent.args.once = True

    assert agent.run() == cli.EXIT_OK
    assert server.calls == [("register", 8), ("heartbeat", None), ("register", 8), ("assignments", None)]


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("COMPUTEFLOW_AGENT_TOKEN", "cfa_from_env")

    assert cli.parse_args(["--server", "http://x"]).token == "cfa_from_env"


def test_without_a_token_the_agent_refuses_to_start(monkeypatch, capsys):
    monkeypatch.delenv("COMPUTEFLOW_AGENT_TOKEN", raising=False)

    with pytest.raises(SystemExit) as exited:
        cli.parse_args(["--server", "http://x"])

    assert exited.value.code == cli.EXIT_USAGE
    assert "--token is required" in capsys.readouterr().err
