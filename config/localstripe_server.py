"""Run localstripe (the stateful Stripe fake) bound to loopback only.

localstripe's own CLI binds every interface (`::`); the marketplace only ever needs it on this
machine, so this starts the same aiohttp app on 127.0.0.1.
"""

import argparse
import logging

from aiohttp import web
from localstripe import server
from localstripe.resources import store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--from-scratch", action="store_true")
    # localstripe saves its store to one fixed file (/tmp/localstripe.pickle) after every write; a test's
    # instance must neither read nor clobber the development server's.
    parser.add_argument("--memory-only", action="store_true", help="start empty and never save the store to disk")
    args = parser.parse_args()
    if args.memory_only:
        store.dump_to_disk = lambda: None
    elif not args.from_scratch:
        store.try_load_from_disk()
    logging.basicConfig(level=logging.INFO)
    web.run_app(server.app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
