"""The agent API over HTTP. Only the public endpoints; errors are classified for the caller:
retry (ServerUnavailable), re-register (RegisterFirst) or stop (AgentRefused)."""

import requests

from nodeagent import __version__


class ServerUnavailable(Exception):
    """The server could not be reached or failed (connection error, timeout, 5xx): worth retrying."""


class AgentRefused(Exception):
    """The server refused the request for a reason a retry will not fix (wrong key, bad report)."""

    def __init__(self, status_code: int, code: str, message: str):
        super().__init__(f"{message} (HTTP {status_code}, {code})")
        self.status_code = status_code
        self.code = code
        self.message = message


class RegisterFirst(AgentRefused):
    """The server has no hardware report for this node yet."""


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        message = error.get("message") or response.reason
        fields = error.get("fields") or {}
        details = "; ".join(f"{name}: {' '.join(map(str, reasons))}" for name, reasons in fields.items())
        if details and details not in message:
            message = f"{message} ({details})"
        return str(error.get("code") or "error"), message
    except (ValueError, KeyError, TypeError, AttributeError):
        return "error", (response.text.strip()[:300] or response.reason or "no message")


class AgentClient:
    def __init__(self, *, server: str, token: str, timeout: float = 10.0, session: requests.Session | None = None):
        self.base = server.rstrip("/") + "/api/agent/"
        # Many agents in one process (the demo's simulated agents) share one session, so that they share a
        # few kept-alive connections instead of holding one server thread each; the key goes with each request.
        self.session = session or requests.Session()
        self.headers = {"Authorization": f"Agent {token}", "User-Agent": f"computeflow-nodeagent/{__version__}"}
        self.timeout = timeout

    def register(self, report: dict) -> dict:
        return self._post("register/", report)

    def heartbeat(self) -> dict:
        return self._post("heartbeat/", {})

    def usage(self, samples: list[dict]) -> dict:
        return self._post("usage/", {"samples": samples})

    def assignments(self) -> dict:
        """This node's desired state: {"node", "poll_seconds", "assignments": [...]} (the provisioning contract)."""
        return self._request("GET", "assignments/")

    def report(self, assignment_id: int, state: str, reason: str = "", devices: list[dict] | None = None) -> dict:
        """Report one assignment "running" (every device healthy), "failed" (reason required) or "stopped".
        `devices`: [{"index": 0, "healthy": True}, ...]. A 409 assignment_closed (AgentRefused) means stop it."""
        body: dict = {"state": state, "reason": reason[:500]}
        if devices is not None:
            body["devices"] = devices
        return self._post(f"assignments/{int(assignment_id)}/report/", body)

    def _post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = self.session.request(
                method, self.base + path, json=body, headers=self.headers, timeout=self.timeout
            )
        except requests.ConnectionError as error:
            raise ServerUnavailable(f"cannot connect to {self.base}") from error
        except requests.Timeout as error:
            raise ServerUnavailable(f"no answer from {self.base} within {self.timeout:g}s") from error
        except requests.RequestException as error:
            raise ServerUnavailable(f"{type(error).__name__}: {error}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise ServerUnavailable(f"HTTP {response.status_code} from {self.base + path}")
        if response.status_code >= 400:
            code, message = _error_of(response)
            cls = RegisterFirst if code == "register_first" else AgentRefused
            raise cls(response.status_code, code, message)
        try:
            return response.json()
        except ValueError as error:
            raise ServerUnavailable(f"not a JSON answer from {self.base + path}: {response.text[:200]!r}") from error
