"""The wire between host and virtual board: link pacing and faults, in simulated time.

A UART carries 10 bits a byte (start, 8 data, stop), so at `baud` a byte takes 10/baud
seconds each way. A native USB CDC port ignores the baud and moves bytes at USB speed:
given `bytes_per_s` (the board's `link_rate`, ~1 MB/s at full speed), a byte takes
1/bytes_per_s. Host bytes enter the line when written and reach the device one by
one; device bytes leave when the device writes them and reach the host one by one.
Drop and corrupt faults act on bytes, dup and garbage on device frames: all on the wire,
nothing is told to either end. `step(now)` is the only clock: the pty server calls it
with time.monotonic(), the URL handler on every read and write, tests with any number.
"""

from __future__ import annotations

from collections import deque

from deploykit.virtual_board.engine import DeviceEngine


class PacedLink:
    def __init__(self, engine: DeviceEngine, baud: int, paced: bool = True,
                 bytes_per_s: int | None = None, kind: str = "uart"):
        self.engine = engine
        self.kind = kind                  # "uart" | "usb-cdc": what is being modelled
        self.bytes_per_s = float(bytes_per_s) if bytes_per_s else baud / 10.0
        self.byte_time = 1.0 / self.bytes_per_s if paced else 0.0
        self._rx: deque[list] = deque()   # [start, bytes]: byte i arrives at start + (i+1)·bt
        self._tx: deque[list] = deque()   # same, towards the host
        self._rx_free = self._tx_free = 0.0
        self.epoch: float | None = None   # engine time 0 in caller's clock

    def clock(self, now: float) -> float:
        if self.epoch is None:
            self.epoch = now
        return now - self.epoch

    def host_write(self, data: bytes, now: float) -> None:
        """The host wrote `data` at `now`: it enters the line behind earlier bytes."""
        t = self.clock(now)
        data = self.engine.faults.wire(bytes(data), "rx")
        if data:
            start = max(t, self._rx_free)
            self._rx.append([start, data])
            self._rx_free = start + len(data) * self.byte_time

    def step(self, now: float) -> bytes:
        """Advance to `now`; return the bytes that have reached the host by then."""
        t = self.clock(now)
        self._deliver_rx(t)
        self.engine.advance(t)
        for when, data, is_frame in self.engine.take_output(t):
            self._transmit(when, data, is_frame)
        return self._arrived_tx(t)

    def _deliver_rx(self, t: float) -> None:
        bt = self.byte_time
        while self._rx:
            start, data = self._rx[0]
            n = len(data) if bt == 0 else min(len(data), int((t - start) / bt + 1e-9))
            if n <= 0:
                return
            self.engine.receive(data[:n], start + bt, bt)
            if n == len(data):
                self._rx.popleft()
            else:
                self._rx[0] = [start + n * bt, data[n:]]

    def _transmit(self, when: float, data: bytes, is_frame: bool) -> None:
        faults = self.engine.faults
        for piece in (faults.frame(data) if is_frame else [data]):
            piece = faults.wire(piece, "tx")
            start = max(when, self._tx_free)
            self._tx.append([start, piece])
            self._tx_free = start + len(piece) * self.byte_time

    def _arrived_tx(self, t: float) -> bytes:
        out, bt = bytearray(), self.byte_time
        while self._tx:
            start, data = self._tx[0]
            n = len(data) if bt == 0 else min(len(data), int((t - start) / bt + 1e-9))
            if start > t or n <= 0:
                break
            out += data[:n]
            if n == len(data):
                self._tx.popleft()
            else:
                self._tx[0] = [start + n * bt, data[n:]]
        return bytes(out)

    def next_time(self) -> float | None:
        """Caller's-clock time of the next thing that happens without new input, if any."""
        bt = self.byte_time
        times = [self._rx[0][0] + bt] if self._rx else []
        times += [self._tx[0][0] + bt] if self._tx else []
        due = self.engine.next_due()
        times += [due] if due is not None else []
        times += [self.engine.out[0][0]] if self.engine.out else []
        if not times or self.epoch is None:
            return None
        return min(times) + self.epoch

    def cut(self) -> None:
        """The cable is pulled: bytes on the line are lost."""
        self._rx.clear()
        self._tx.clear()
