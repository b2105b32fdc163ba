"""junit.xml: one test case per threshold plus "run completed", every figure as a property.

CI shows which limit a run missed (a threshold case fails), whether the rig produced
results at all ("run completed" errors when no sample ran), and keeps every measured
figure beside them as `<property name="latency.us.p99" value="…">`. Durations are the
run's wall time. Text from the model or the device (a name, a log line) can hold
characters XML 1.0 cannot carry at all (control characters); they are written as
visible escapes (`\\x07`), so the file always parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# Everything XML 1.0 allows in a document (https://www.w3.org/TR/xml/#charsets); the rest is escaped.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Report parts that are not figures: lists, file paths, the run's own bookkeeping.
_NOT_FIGURES = {"files", "failures", "device_log", "thresholds", "schema", "note"}


def xml_text(value) -> str:
    """`value` as text XML can hold: characters XML forbids become `\\xNN` / `\\uNNNN`."""
    return _NOT_XML.sub(lambda m: _escape_char(m.group()), str(value))


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def figures(report: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted name, value) of every scalar the report measured or recorded, in report order."""
    out = []
    for key, value in report.items():
        if not prefix and (key in _NOT_FIGURES or key.startswith("_")):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += figures(value, name + ".")
        elif value is not None and not isinstance(value, (list, tuple)):
            out.append((name, value))
    return out


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return xml_text(value)


def _el(parent, tag: str, **attrs) -> ET.Element:
    return ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})


def render_junit(report: dict, suite: str = "deploykit.hil") -> str:
    checks = report.get("thresholds") or []
    seconds = float(report.get("duration_s") or (report.get("throughput") or {}).get("seconds") or 0.0)
    samples = int(report.get("samples") or 0)
    failures = sum(not c["passed"] for c in checks)
    root = ET.Element("testsuites")
    ts = _el(root, "testsuite", name=suite, tests=len(checks) + 1, failures=failures,
             errors=int(samples == 0), time=f"{seconds:.3f}",
             **({"timestamp": report["started_at"]} if report.get("started_at") else {}))
    props = _el(ts, "properties")
    if report.get("note"):
        _el(props, "property", name="note", value=report["note"])
    for name, value in figures(report):
        _el(props, "property", name=name, value=_value(value))
    _run_case(ts, suite, report, samples, seconds)
    for check in checks:
        el = _el(ts, "testcase", classname=suite, time="0.000",
                 name=f"{check['name']}: {check['figure']} {check['op']} {check['limit']:g}")
        message = xml_text(check["message"])
        if not check["passed"]:
            ET.SubElement(el, "failure", message=message, type="threshold").text = message
        else:
            ET.SubElement(el, "system-out").text = message
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _run_case(ts, suite: str, report: dict, samples: int, seconds: float) -> None:
    """The "run completed" case: an error (the rig, not a threshold) when no sample ran."""
    model = (report.get("model") or {}).get("name")
    board = (report.get("device") or {}).get("board_id")
    failed = report.get("samples_failed", 0)
    text = (f"{samples} samples of {model} on {board}"
            f"{' (simulated)' if report.get('simulated') else ''}, {failed} failed on the device")
    if report.get("note"):
        text = f"{report['note']}; {text}"
    el = _el(ts, "testcase", classname=suite, name="run completed", time=f"{seconds:.3f}")
    if samples == 0:
        ET.SubElement(el, "error", message=xml_text(f"no sample produced a result: {text}"),
                      type="rig").text = xml_text(text)
    else:
        ET.SubElement(el, "system-out").text = xml_text(text)
