"""Reports of a HIL run: report.json (schema-versioned), report.md, report.html, junit.xml.

build.py computes the figures from results.jsonl rows and the desktop references
(aggregate.py folds the rows in one at a time, so no report holds them all);
thresholds.py decides pass or fail; the writers only format.
"""

from deploykit.report.build import SCHEMA, build_report
from deploykit.report.thresholds import Thresholds, evaluate
from deploykit.report.write import write_reports

__all__ = ["SCHEMA", "Thresholds", "build_report", "evaluate", "write_reports"]
