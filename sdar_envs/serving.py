"""Serve a WSGI app (the WebShop site, the retrieval server) from a background thread.

    server = BackgroundServer(create_app(), threads=16)   # 127.0.0.1, a free port
    env = gym.make("sdar/WebShop-v0", base_url=server.url)
    ...
    server.close()

The same waitress server the command-line entry points run, for scripts, notebooks, tests and
benchmarks that want a live HTTP endpoint without a second process.
"""

from __future__ import annotations

import threading
from typing import Any


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
