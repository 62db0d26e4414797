"""A small test agent loop over real HTTP, on nodeagent.client.AgentClient's assignments() and report():
it applies nothing, it reports as a node would (running with every device healthy, or a failed boot),
and confirms stops. The real agent loop is nodeagent's; this one exists so the tests drive the server
through exactly the public API an agent uses."""

import time

from nodeagent.client import AgentClient


class TestAgent:
    __test__ = False  # not a test class

    def __init__(self, *, server: str, key: str, fail_boot_with: str = ""):
        self.client = AgentClient(server=server, token=key, timeout=10)
        self.fail_boot_with = fail_boot_with
        self.reports: list[tuple[int, str, dict]] = []  # (assignment, state, answer)

    def close(self):
        self.client.session.close()  # a kept-alive connection would keep a live_server thread (and its DB session)

    def step(self) -> list[dict]:
        """One poll: apply (pretend) every assignment and report. Returns the assignments seen."""
        assignments = self.client.assignments()["assignments"]
        for assignment in assignments:
            if assignment["desired"] == "run" and assignment["state"] == "pending":
                if self.fail_boot_with:
                    answer = self.client.report(assignment["id"], "failed", reason=self.fail_boot_with)
                    self.reports.append((assignment["id"], "failed", answer))
                else:
                    devices = [{"index": device["index"], "healthy": True} for device in assignment["devices"]]
                    answer = self.client.report(assignment["id"], "running", devices=devices)
                    self.reports.append((assignment["id"], "running", answer))
            elif assignment["desired"] == "stop":
                answer = self.client.report(assignment["id"], "stopped")
                self.reports.append((assignment["id"], "stopped", answer))
        return assignments

    def poll_until(self, predicate, *, timeout: float = 30.0, every: float = 0.2):
        """Poll (and act) until predicate() is true; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step()
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"not reached within {timeout}s; reports so far: {self.reports}")
