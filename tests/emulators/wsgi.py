"""A threaded WSGI server on 127.0.0.1 (wsgiref) for the tests' task and push endpoints."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

App = Callable[[Mapping[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class LocalServer:
    """Serves `app` on a free port of 127.0.0.1 from a thread until `stop()`; `url` ends in
    `path` (an Azure Functions route is `/api/NAME`)."""

    def __init__(self, app: App, path: str = "/") -> None:
        self._server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}{path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
