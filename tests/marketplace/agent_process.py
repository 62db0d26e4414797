"""The real node agent (`python -m nodeagent --simulate ...`) as a child process of a test, against a
live server over HTTP: it registers, heartbeats, sends usage and polls and applies its assignments
exactly as on a provider's machine, only without containers. Killing it is how a node falls silent."""

import os
import signal
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


class AgentProcess:
    __test__ = False

    def __init__(self, *, server: str, key: str, model: str, cards: int, log_path: Path, fail_boot: bool = False):
        self.log_path = log_path
        self.log = log_path.open("w")
        argv = [
            sys.executable, "-m", "nodeagent", "--server", server, "--simulate", f"{model}:{cards}",
            "--interval", "1", "--usage-interval", "1", "--poll-interval", "1", "--timeout", "10", "-v",
        ]
        if fail_boot:
            argv.append("--simulate-fail-boot")
        env = {**os.environ, "COMPUTEFLOW_AGENT_TOKEN": key}  # keeps the key out of `ps`, as documented
        self.process = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """The node dies: no goodbye, no stop reports."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=20)

    def close(self) -> None:
        self.kill()
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()
