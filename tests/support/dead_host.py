"""A dead Redis host on loopback, for real: unlike a stopped Redis, which refuses a
connection at once, a dead host never answers.

    silent_host()       accepts the connection (the kernel completes the handshake) and
                        never answers a command: a read that never gets a reply
    unreachable_host()  drops every connection attempt: its accept queue is full, so the
                        kernel drops each new SYN (tcp_abort_on_overflow = 0), as a
                        firewall or a host that is gone does: a connect that never
                        completes
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


@contextmanager
def silent_host() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # kept open, never read or written
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True, name="silent-redis")
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in (*accepted, server):
            conn.close()


@contextmanager
def unreachable_host() -> Iterator[int]:
    with ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # an accept queue of one, never accepted
        port = server.getsockname()[1]
        for _ in range(4):  # fill it: from now on every SYN is dropped
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        probe = stack.enter_context(socket.socket())
        probe.settimeout(1.5)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass  # the SYN was dropped: the host is dead to a new client
        else:
            raise AssertionError("the accept queue did not fill: SYNs are not dropped")
        yield port
