"""results.jsonl: one JSON line per sample, appended and flushed as results arrive.

The first line is a header naming the model (sha256) and the data (sha256 of all its
quantized samples, whatever --limit takes of them). A run whose header matches continues the file: samples
already there are not sent again, and a torn last line (a run killed mid-write) is cut
off. A file with another header, or opened with resume=False, is started afresh.

Row: {"index", "outputs": [[ints or floats per output tensor]], "cycles", "us",
"round_trip_us"} or {"index", "error": text} for a sample the device could not run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SCHEMA = "deploykit.hil-results/1"


class ResultsFile:
    """Append-only per-sample results with resume."""

    def __init__(self, path: Path, header: dict, resume: bool = True):
        self.path = Path(path)
        self.header = {"schema": SCHEMA, **header}
        self.resume = resume
        self.rows: dict[int, dict] = {}
        self.resumed: set[int] = set()  # indices found in the file when it was opened
        self._fh = None

    def open(self) -> "ResultsFile":
        """Load a matching file (resume) or start a new one; open for appending."""
        kept = self._load_matching() if self.resume else None
        if kept is None:
            self._fh = open(self.path, "w", encoding="utf-8")
            self._write(self.header)
        else:
            with open(self.path, "r+b") as fh:
                fh.truncate(kept)  # drop a torn last line
            self._fh = open(self.path, "a", encoding="utf-8")
            self.resumed = set(self.rows)
        return self

    def _load_matching(self) -> int | None:
        """Rows of an existing file with our header; the byte length of its whole lines."""
        if not self.path.is_file():
            return None
        good, rows = 0, {}
        with open(self.path, "rb") as fh:
            for n, line in enumerate(fh):
                if not line.endswith(b"\n"):
                    break
                try:
                    obj = json.loads(line)
                except ValueError:
                    break
                if n == 0 and obj != self.header:
                    return None
                if n and isinstance(obj, dict) and isinstance(obj.get("index"), int):
                    rows.setdefault(obj["index"], obj)
                good += len(line)
        if good == 0:
            return None
        self.rows = rows
        return good

    def append(self, row: dict, flush: bool = True) -> None:
        """Record one sample's row (first one wins); flush it to disk unless told to wait."""
        if row["index"] in self.rows:
            return
        self.rows[row["index"]] = row
        self._write(row, flush)

    def flush(self) -> None:
        self._fh.flush()

    def _write(self, obj: dict, flush: bool = True) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        if flush:
            self._fh.flush()

    def sync(self) -> None:
        if self._fh:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
