"""Run localstripe (the stateful Stripe fake) bound to loopback only.

localstripe's own CLI binds every interface (`::`); the marketplace only ever needs it on this
machine, so this starts the same aiohttp app on 127.0.0.1.
"""

import argparse
import logging

from aiohttp import web
from localstripe import server
from localstripe.resources import store
from localstripe.webhooks import register_webhook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--from-scratch", action="store_true")
    # localstripe saves its store to one fixed file (/tmp/localstripe.pickle) after every write; a test's
    # instance must neither read nor clobber the development server's.
    parser.add_argument("--memory-only", action="store_true", help="start empty and never save the store to disk")
    # Where localstripe delivers its events (signed with the secret), as a Stripe dashboard endpoint would.
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--webhook-secret", default="")
    args = parser.parse_args()
    if args.webhook_url:
        register_webhook("computeflow", args.webhook_url, args.webhook_secret, None)
    if args.memory_only:
        store.dump_to_disk = lambda: None
    elif not args.from_scratch:
        store.try_load_from_disk()
    logging.basicConfig(level=logging.INFO)
    web.run_app(server.app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
