"""A minimal SNTP server on loopback UDP, for the TSA's NTP cross-check.

Minimal: one thread, one socket, no authentication, no rate limiting, no client
bookkeeping.  Faithful to the packet format of RFC 4330 (SNTPv4) §4-5: a 48-byte
reply with LI/VN/Mode (mode 4, server; the client's version echoed), stratum, poll,
precision, root delay and dispersion, reference identifier, and the four
timestamps in NTP's 64-bit fixed point since 1900, the originate timestamp being
the client's transmit timestamp copied verbatim.  A test sets what it answers:
a clock `offset_s` from ours (to make the local clock look off), the leap
indicator (3: alarm, unsynchronised), the stratum, or `silent` (no answer).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

#: Seconds from the NTP era (1900-01-01) to the Unix epoch.
NTP_EPOCH_OFFSET = 2_208_988_800
_PACKET = struct.Struct("!BBbbII4sQQQQ")


def ntp_timestamp(seconds: float) -> int:
    """Unix time -> NTP 64-bit fixed point (32 bits seconds, 32 bits fraction)."""
    value = seconds + NTP_EPOCH_OFFSET
    whole = int(value)
    return (whole << 32) | int((value - whole) * 2**32)


class SntpServer:
    def __init__(
        self, *, offset_s: float = 0.0, leap: int = 0, stratum: int = 2, silent: bool = False
    ) -> None:
        self.offset_s, self.leap, self.stratum, self.silent = offset_s, leap, stratum, silent
        self.queries = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sntp", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            received = time.time() + self.offset_s
            if len(data) < _PACKET.size:
                continue  # not an NTP packet: RFC 4330 §5 says discard
            first = data[0]
            version, mode = (first >> 3) & 0x7, first & 0x7
            if mode != 3:  # only client requests are answered
                continue
            self.queries += 1
            if self.silent:
                continue
            client_transmit = data[40:48]  # copied verbatim into the originate timestamp
            reference = received - 16
            reply = _PACKET.pack(
                (self.leap << 6) | (version << 3) | 4,
                self.stratum,
                4,  # poll: 16 s
                -20,  # precision: about a microsecond
                0,  # root delay
                1 << 10,  # root dispersion: 1/64 s in 16.16 fixed point
                b"LOCL" if self.stratum <= 1 else b"\x7f\x00\x00\x01",
                ntp_timestamp(reference),
                0,  # placeholder: replaced by the client's transmit timestamp below
                ntp_timestamp(received),
                ntp_timestamp(time.time() + self.offset_s),
            )
            reply = reply[:24] + client_transmit + reply[32:]
            self._socket.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()

    def __enter__(self) -> SntpServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
