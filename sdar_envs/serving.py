"""Serve a WSGI app (the WebShop site, the retrieval server) from a background thread.

    server = BackgroundServer(create_app(), threads=16)   # 127.0.0.1, a free port
    env = gym.make("sdar/WebShop-v0", base_url=server.url)
    ...
    server.close()

The same waitress server the command-line entry points run, for scripts, notebooks, tests and
benchmarks that want a live HTTP endpoint without a second process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """One line per event, at most one a `interval_s` per logger; the lines it held back are counted in the next."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self.logger, self.interval = logger, interval_s
        self._last, self._held = -float("inf"), 0
        self._lock = threading.Lock()

    def error(self, message: str, *args: Any) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        suffix = f" (and {held} more like it since the last line)" if held else ""
        self.logger.error(message + suffix, *args)


def read_json_object(data: bytes) -> dict[str, Any]:
    """A request body as a JSON object; a ValueError that says what is wrong with it otherwise.

    Covers what Python's parser itself cannot take (nesting deeper than its recursion limit, an
    integer of over 4300 digits) as well as bodies that are not UTF-8, not JSON or not an object.
    """
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"the body is not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise ValueError("the body's JSON is nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and the integer digit limit
        raise ValueError(f"the body is not valid JSON ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(body, dict):
        raise ValueError(f"the body is a JSON {type(body).__name__}, not an object")
    return body


def check_text(value: str, what: str) -> str:
    """`value` if it is valid text (encodable as UTF-8); a ValueError naming `what` if it holds a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} is not valid text: a lone surrogate at character {err.start}") from None
    return value


class BackgroundServer:
    """A waitress server on a daemon thread; `url` is where it listens."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> None:
        from waitress.server import create_server

        self.server = create_server(app, host=host, port=port, threads=threads)
        self.url = f"http://{host}:{self.server.effective_port}"
        self._closed = False
        self.thread = threading.Thread(target=self._run, name=f"waitress-{self.url}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):  # the loop's sockets closed under it by close()
            if not self._closed:
                raise

    def close(self) -> None:
        """Stop listening (open connections are dropped)."""
        self._closed = True
        self.server.task_dispatcher.shutdown()
        self.server.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
