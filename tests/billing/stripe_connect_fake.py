"""THE stand-in for Stripe Connect transfers (localstripe has no Connect). Everything else of Stripe is
tested against localstripe over HTTP; only the transfer calls come here.

A loopback HTTP server (real sockets; the `stripe` library talks to it exactly as to api.stripe.com
through STRIPE_CONNECT_API_BASE) answering with the shapes of Stripe's API reference
(https://docs.stripe.com/api/transfers): POST /v1/transfers (form-encoded, Idempotency-Key honoured
as Stripe does: the same key answers the first response again), GET /v1/transfers/<id>,
POST /v1/transfers/<id>/reversals. Errors use Stripe's error object
({"error": {"type", "code", "message", "param"}}).

Destinations it knows: any `acct_...` registered with `add_account`; anything else is Stripe's
"No such destination" (400, resource_missing).
"""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl


class ConnectFake:
    def __init__(self):
        self.accounts: set[str] = set()
        self.transfers: dict[str, dict] = {}
        self.by_key: dict[str, tuple[int, dict]] = {}
        self.calls: list[tuple[str, str, str | None]] = []  # (method, path, idempotency key)
        self.fail_next_with_500 = 0  # answer this many transfer creations with a 500 (Stripe down)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        with self._lock:
            self.accounts.clear()
            self.transfers.clear()
            self.by_key.clear()
            self.calls.clear()
            self.fail_next_with_500 = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "ConnectFake":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_account(self, account_id: str) -> str:
        self.accounts.add(account_id)
        return account_id

    def reverse(self, transfer_id: str) -> dict:
        """What a platform (or Stripe, on a dispute) does to take a transfer back: a full reversal."""
        with self._lock:
            transfer = self.transfers[transfer_id]
            reversal = {"id": f"trr_{next(self._ids):014d}", "object": "transfer_reversal", "amount": transfer["amount"],
                        "currency": transfer["currency"], "created": int(time.time()), "transfer": transfer_id, "metadata": {},
                        "balance_transaction": f"txn_{next(self._ids):014d}", "destination_payment_refund": None,
                        "source_refund": None}
            transfer["reversals"]["data"].insert(0, reversal)
            transfer["reversals"]["total_count"] += 1
            transfer["amount_reversed"] = transfer["amount"]
            transfer["reversed"] = True
            return reversal

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _create(self, form: dict[str, str]) -> tuple[int, dict]:
        missing = [name for name in ("amount", "currency", "destination") if not form.get(name)]
        if missing:
            return 400, _error("parameter_missing", f"Missing required param: {missing[0]}.", missing[0])
        if not form["amount"].isdigit() or int(form["amount"]) <= 0:
            return 400, _error("parameter_invalid_integer", "Invalid positive integer", "amount")
        if form["destination"] not in self.accounts:
            return 400, _error("resource_missing", f"No such destination: '{form['destination']}'", "destination")
        number = next(self._ids)
        transfer = {
            "id": f"tr_{number:014d}", "object": "transfer", "amount": int(form["amount"]), "amount_reversed": 0,
            "balance_transaction": f"txn_{number:014d}", "created": int(time.time()), "currency": form["currency"],
            "description": form.get("description"), "destination": form["destination"],
            "destination_payment": f"py_{number:014d}", "livemode": False,
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                          "url": f"/v1/transfers/tr_{number:014d}/reversals"},
            "reversed": False, "source_transaction": None, "source_type": "card", "transfer_group": form.get("transfer_group"),
        }
        self.transfers[transfer["id"]] = transfer
        return 200, transfer

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{next(fake._ids):014d}")
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization", "").startswith("Bearer sk_"):
                    return True
                self._answer(401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})
                return False

            def do_GET(self):
                if not self._authorized():
                    return
                fake.calls.append(("GET", self.path, None))
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["v1", "transfers"]:
                    with fake._lock:
                        transfer = fake.transfers.get(parts[2])
                    if transfer is None:
                        return self._answer(404, _error("resource_missing", f"No such transfer: '{parts[2]}'", "id"))
                    return self._answer(200, transfer)
                self._answer(404, _error("resource_missing", "Unrecognized request URL", None))

            def do_POST(self):
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                key = self.headers.get("Idempotency-Key")
                fake.calls.append(("POST", self.path, key))
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts == ["v1", "transfers"]:
                    with fake._lock:
                        if key and key in fake.by_key:
                            return self._answer(*fake.by_key[key])
                        if fake.fail_next_with_500:
                            fake.fail_next_with_500 -= 1
                            return self._answer(500, {"error": {"type": "api_error", "message": "An unknown error occurred"}})
                        answer = fake._create(form)
                        if key:
                            fake.by_key[key] = answer
                    return self._answer(*answer)
                if len(parts) == 4 and parts[:2] == ["v1", "transfers"] and parts[3] == "reversals":
                    if parts[2] not in fake.transfers:
                        return self._answer(404, _error("resource_missing", f"No such transfer: '{parts[2]}'", "id"))
                    return self._answer(200, fake.reverse(parts[2]))
                self._answer(404, _error("resource_missing", "Unrecognized request URL", None))

        return Handler


def _error(code: str, message: str, param: str | None) -> dict:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message, "param": param,
                      "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"}}
