"""The agent's loop with a fake server: register, heartbeat, re-register when the hardware changes."""

import pytest

from nodeagent import cli
from nodeagent.client import RegisterFirst


class FakeServer:
    def __init__(self, heartbeat_answers=None):
        self.calls = []
        self.heartbeat_answers = list(heartbeat_answers or [])

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


def stop_after(rounds: int):
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) > rounds:
            raise KeyboardInterrupt

    return sleep, slept


def make_agent(server, sleep, simulate="H100 SXM5 80GB:8"):
    args = cli.parse_args(["--server", "http://x", "--token", "cfa_k", "--simulate", simulate, "--interval", "5"])
    return cli.Agent(args, server, sleep=sleep)


def test_the_agent_registers_once_then_heartbeats_every_interval():
    server = FakeServer()
    sleep, slept = stop_after(3)
    agent = make_agent(server, sleep)

    with pytest.raises(KeyboardInterrupt):
        agent.run()

    assert server.calls == [("register", 8)] + [("heartbeat", None)] * 4
    assert slept == [5.0] * 4


def test_a_change_in_what_the_machine_reports_is_registered_again():
    # given an agent that registered 8 cards
    server = FakeServer()
    sleep, _slept = stop_after(2)
    agent = make_agent(server, sleep)
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
    assert server.calls == [("register", 8), ("heartbeat", None), ("heartbeat", None), ("register", 7)]


def test_a_server_that_lost_the_report_gets_it_again():
    server = FakeServer(heartbeat_answers=[RegisterFirst(409, "register_first", "Register first.")])
    agent = make_agent(server, sleep=lambda _s: None)
    agent.args.once = True

    assert agent.run() == cli.EXIT_OK
    assert server.calls == [("register", 8), ("heartbeat", None), ("register", 8)]


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("COMPUTEFLOW_AGENT_TOKEN", "cfa_from_env")

    assert cli.parse_args(["--server", "http://x"]).token == "cfa_from_env"


def test_without_a_token_the_agent_refuses_to_start(monkeypatch, capsys):
    monkeypatch.delenv("COMPUTEFLOW_AGENT_TOKEN", raising=False)

    with pytest.raises(SystemExit) as exited:
        cli.parse_args(["--server", "http://x"])

    assert exited.value.code == cli.EXIT_USAGE
    assert "--token is required" in capsys.readouterr().err
