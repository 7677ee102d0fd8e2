"""A stand-in IP camera: an MJPEG stream (multipart/x-mixed-replace) over HTTP on loopback.

Frames are numbered across connections: the first connection is dropped after ``drop_after``
frames, the next connection carries on with the following frame, as a camera that loses its
network link would. Once every frame is sent, further requests get 503.
Frame n is a flat grey image of level ``level_of(n)``, so a reader can tell which frame it got.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import cv2
import numpy as np

BOUNDARY = b"frame"


def level_of(n: int) -> int:
    return 20 + 5 * n


def frame_of_level(level: float) -> int:
    return round((level - 20) / 5)


class MjpegServer:
    def __init__(
        self,
        n_frames: int = 30,
        drop_after: int = 10,
        size: tuple[int, int] = (64, 48),
        interval: float = 0.005,
    ) -> None:
        if level_of(n_frames - 1) > 250:
            raise ValueError("too many frames to tell apart by grey level")
        width, height = size
        self.jpegs = [
            cv2.imencode(".jpg", np.full((height, width, 3), level_of(n), np.uint8))[1].tobytes()
            for n in range(n_frames)
        ]
        self.drop_after = drop_after
        self.interval = interval
        self.connections = 0  # requests answered with a stream
        self.sent = 0  # frames sent so far, over all connections
        self.done = threading.Event()  # every frame has been sent
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/stream.mjpg"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the connection ends when the handler returns

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with server._lock:
                    if server.sent >= len(server.jpegs):
                        self.send_error(503, "camera off")
                        return
                    server.connections += 1
                    first = server.connections == 1
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                )
                self.end_headers()
                in_this_connection = 0
                while True:
                    with server._lock:
                        if server.sent >= len(server.jpegs):
                            server.done.set()
                            return
                        if first and in_this_connection == server.drop_after:
                            return  # drop the connection mid-stream
                        jpeg = server.jpegs[server.sent]
                        server.sent += 1
                    part = (
                        b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
                    )
                    try:
                        self.wfile.write(part)
                        self.wfile.flush()
                    except OSError:
                        return
                    in_this_connection += 1
                    if server.interval:
                        server.done.wait(server.interval)

        return Handler

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
