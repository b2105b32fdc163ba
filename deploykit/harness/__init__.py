"""The host side of a hardware-in-the-loop run: talk to a device, stream data, collect results.

`DeviceSession` (session.py) speaks the wire protocol over any pyserial URL; `run_hil`
(run.py) turns a manifest and a data file into results.jsonl and a report.
"""

from deploykit.link.session import DeviceSession, FaultCounts, SampleFailure, SampleResult, StaleFirmware

__all__ = ["DeviceSession", "FaultCounts", "SampleFailure", "SampleResult", "StaleFirmware"]
