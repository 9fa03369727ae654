"""Bounded capture of a kernel's stdout/stderr for one execution.

The code may print gigabytes: only the first and last ``max_chars / 2`` bytes are kept (a traceback at the
end stays visible), the rest is counted and dropped as it arrives, so the server's memory stays bounded.
The end of an execution's output is a sentinel the kernel writes; it is looked for across chunk
boundaries without keeping the dropped bytes.
"""

from __future__ import annotations


class OutputCapture:
    def __init__(self, max_chars: int, sentinel: bytes) -> None:
        self._head_cap = max_chars // 2
        self._tail_cap = max_chars - self._head_cap
        self._sentinel = sentinel
        self._head = bytearray()
        self._tail = bytearray()
        self._pending = b""  # a possible start of the sentinel, held back until the next chunk
        self.dropped = 0
        self.complete = False

    def feed(self, chunk: bytes) -> bytes:
        """Take a chunk; return what follows the sentinel once found (not this execution's output)."""
        if self.complete:
            return chunk
        data = self._pending + chunk
        index = data.find(self._sentinel)
        if index >= 0:
            self._commit(data[:index])
            self._pending = b""
            self.complete = True
            return data[index + len(self._sentinel) :]
        keep = len(self._sentinel) - 1
        self._commit(data[:-keep] if keep else data)
        self._pending = data[-keep:] if keep else b""
        return b""

    def _commit(self, data: bytes) -> None:
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self._tail_cap
        if excess > 0:
            del self._tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        """The captured output, with a marker where bytes were dropped (at most ``max_chars`` chars)."""
        tail = bytes(self._tail) + self._pending
        if not self.dropped:
            return (bytes(self._head) + tail).decode("utf-8", errors="replace")
        # the cut may split a UTF-8 sequence: skip continuation bytes at the start of the tail
        start = 0
        while start < len(tail) and start < 4 and tail[start] & 0xC0 == 0x80:
            start += 1
        head = self._head.decode("utf-8", errors="ignore")
        marker = f"\n\n[… output truncated: {self.dropped:,} bytes omitted …]\n\n"
        return head + marker + tail[start:].decode("utf-8", errors="replace")
