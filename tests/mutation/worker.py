"""cosmic-ray's http distributor, bound to loopback and without its 5-minute client limit.

`python tests/mutation/worker.py serve PORT` runs one mutate-and-test worker in the current
folder (its own copy of the tree) on 127.0.0.1 only; cosmic-ray's own `http-worker` listens on
every interface. `python tests/mutation/worker.py exec CONFIG SESSION` is `cosmic-ray exec`
with aiohttp's default client timeout (300 s in total) lifted: a consumer mutant may run its
tests for up to 600 s, and a request cut at 300 s would come back as an abnormal result (counted
incompetent) while the worker went on testing.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Serve one worker, or run cosmic-ray's exec against the configured workers."""
    command, *rest = argv
    if command == "serve":
        from aiohttp import web
        from cosmic_ray.distribution.http import handle_mutate_and_test

        app = web.Application()
        app.add_routes([web.post("/", handle_mutate_and_test)])
        web.run_app(app, host="127.0.0.1", port=int(rest[0]), print=None)
        return 0
    if command == "exec":
        import aiohttp.client
        from cosmic_ray.cli import cli

        aiohttp.client.DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)
        return cli.main(["exec", *rest], standalone_mode=False) or 0
    raise SystemExit(f"error: unknown command {command!r} (serve PORT | exec CONFIG SESSION)")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
