"""junit.xml: one test case per threshold, so CI shows which limit a run missed."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def render_junit(report: dict, suite: str = "deploykit.hil") -> str:
    cases = report.get("thresholds") or []
    seconds = (report.get("throughput") or {}).get("seconds") or 0.0
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                       failures=str(sum(not c["passed"] for c in cases)), errors="0",
                       time=f"{seconds:.3f}")
    props = ET.SubElement(ts, "properties")
    for key, value in (("model", report.get("model", {}).get("name")),
                       ("board", report.get("device", {}).get("board_id")),
                       ("samples", report.get("samples")), ("simulated", report.get("simulated"))):
        ET.SubElement(props, "property", name=key, value=str(value))
    for case in cases:
        el = ET.SubElement(ts, "testcase", classname=suite, name=f"{case['name']}: {case['figure']} {case['op']} {case['limit']:g}")
        if not case["passed"]:
            ET.SubElement(el, "failure", message=case["message"], type="threshold").text = case["message"]
        else:
            ET.SubElement(el, "system-out").text = case["message"]
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
