"""The child's output (stdout and stderr together), read as it comes and kept up to a limit.

The child's prints must never fill the pipe and block it, and must never fill the grader's
memory: a thread reads them all, keeps the first `limit` bytes and only counts the rest.
"""

from __future__ import annotations

import os
import selectors
import threading
from typing import IO

__all__ = ["Drain"]


class Drain(threading.Thread):
    """Reads the child's stdout/stderr, keeping the first `limit` bytes and counting the rest.

    `stop` ends it at once, even while a process that escaped the kill still holds the pipe.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit = stream, limit
        self.kept = bytearray()
        self.dropped = 0
        self._wake_read, self._wake_write = os.pipe()

    def run(self) -> None:
        fd = self.stream.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if self._wake_read in ready:
                    return
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                room = self.limit - len(self.kept)
                self.kept += chunk[: max(room, 0)]
                self.dropped += max(len(chunk) - max(room, 0), 0)

    def stop(self, wait: float) -> None:
        """Read what is already there for at most `wait` s, then stop and close the pipe."""
        self.join(timeout=wait)
        os.write(self._wake_write, b"x")
        self.join(timeout=2)
        if not self.is_alive():
            self.stream.close()
            os.close(self._wake_read)
        os.close(self._wake_write)

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[... {self.dropped} more bytes of output were dropped]"
        return text
