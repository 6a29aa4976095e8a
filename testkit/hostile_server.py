"""A loopback server that answers badly on purpose: fixed bytes, a dribble, an endless body.

Each connection's request head (and a body announced by Content-Length) is read, then the
`Answer` decides what goes back. Every answer is finite, so a client that never gives up still
lets the test end; the server stops sending when the client hangs up.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    """`head` is sent at once, then `body` in `chunk`-byte pieces `interval` seconds apart,
    `repeat` times over (an endless body is a large repeat)."""

    head: bytes
    body: bytes = b""
    chunk: int = 1 << 16
    interval: float = 0.0
    repeat: int = 1
    requests: list[bytes] = field(default_factory=list)


def http_answer(
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    raw_body: bytes | None = None,
) -> Answer:
    """A well-formed HTTP/1.1 reply; `body` is sent as JSON unless `raw_body` is given."""
    content = raw_body if raw_body is not None else json.dumps(body).encode()
    # The server answers one request per connection: saying so keeps clients from reusing a
    # connection it is closing, which raced into "connection reset" now and then.
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(content)}", "Connection: close"]
    if raw_body is None:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return Answer(head, content)


def dribbled(answer: Answer, interval: float) -> Answer:
    """The same reply, head included, one byte every `interval` seconds."""
    return Answer(b"", answer.head + answer.body, chunk=1, interval=interval)


def endless(piece: bytes = b"x" * 65536, times: int = 100_000) -> Answer:
    """A 200 whose body never ends (chunked, `times` pieces)."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return Answer(head, chunk, chunk=len(chunk), repeat=times)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        rest += piece
    return head + b"\r\n\r\n" + rest


def _path(request: bytes) -> str:
    parts = request.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) > 1 else ""


def _answer(conn: socket.socket, answers: Answers, stop: threading.Event) -> None:
    with conn:
        try:
            request = _read_request(conn)
            answer = answers if isinstance(answers, Answer) else answers[_path(request)]
            answer.requests.append(request)
            conn.sendall(answer.head)
            for _ in range(answer.repeat):
                for start in range(0, len(answer.body), answer.chunk):
                    if stop.is_set():
                        return
                    if answer.interval:
                        time.sleep(answer.interval)
                    conn.sendall(answer.body[start : start + answer.chunk])
        except OSError:
            return  # the client hung up


Answers = Answer | dict[str, Answer]
"""One answer for every request, or one per request path."""


@contextmanager
def serve_answer(answer: Answers) -> Iterator[str]:
    """Serve `answer` to every connection on a free loopback port; yields `http://127.0.0.1:P`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_answer, args=(conn, answer, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
