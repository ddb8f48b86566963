"""Reports of a run (SPEC §4): junit.xml, cost.json, summary.md, result.json, and the console.

Every report is rendered from one `runner.result.RunResult`; `write_reports` writes them all.
"""

from runner.reports.console import Console
from runner.reports.cost import cost_json
from runner.reports.files import write_json_atomic, write_reports, write_text_atomic
from runner.reports.junit import junit_report, junit_xml, merge_suites
from runner.reports.summary import append_step_summary, compact_summary, summary_md

__all__ = [
    "Console",
    "append_step_summary",
    "compact_summary",
    "cost_json",
    "junit_report",
    "junit_xml",
    "merge_suites",
    "summary_md",
    "write_json_atomic",
    "write_reports",
    "write_text_atomic",
]
