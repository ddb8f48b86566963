"""junit.xml (SPEC §4): one <testsuite> per run, so CI dashboards show what happened.

The suite holds, in order:
- `agent` (classname `astra.<task>`): passes when the agent finished. A `<failure>` when a limit
  or the circuit breaker stopped it or it ended without finishing; an `<error>` when our
  infrastructure failed or the run was interrupted. Dashboards can then tell "the agent failed"
  from "astra-run failed".
- one testcase per `verify` check (classname `astra.<task>.verify`), its `<failure>` carrying the
  tail of the check's output;
- the testcases of any JUnit file a check wrote to $ASTRA_JUNIT, with their own classnames (or
  `astra.<task>.<check>` when they have none). An unreadable file never fails the report: it is
  noted in the suite's <system-err> and in the returned notes.

A (classname, name) pair is unique within the suite: repeats get a ` [2]`, ` [3]` suffix. Counts are
computed from what is in the suite. Text is cleaned of characters XML 1.0 cannot hold (terminal
escapes, NUL, lone surrogates), so the file always parses.
"""

from __future__ import annotations

import copy
import logging
import re
import xml.etree.ElementTree as ET  # only on text already screened by _parse_untrusted
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from junitparser import Error, Failure, Skipped, TestCase, TestSuite

from runner.result import RunResult, VerifyResult

log = logging.getLogger(__name__)

OUTPUT_TAIL_CHARS = 4000
"""How much of a failed check's output goes into its <failure>."""
MAX_MERGED_XML_BYTES = 20_000_000
"""A check's JUnit file larger than this is not merged (noted instead)."""

_INVALID_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
# Children and attributes the Jenkins junit-10.xsd allows on <testcase>; others are dropped on merge.
_CASE_CHILDREN = {"skipped", "error", "failure", "rerunFailure", "rerunError", "system-out", "system-err"}
_CASE_ATTRS = {
    "name", "assertions", "time", "timestamp", "classname", "status", "class", "file", "line",
    "log", "group", "url",
}  # fmt: skip


def clean_text(text: str) -> str:
    """Text XML 1.0 can hold: terminal escapes removed, other forbidden characters as U+FFFD."""
    return _INVALID_XML.sub("\ufffd", _ANSI.sub("", text))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(clean_text(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    if len(text) <= limit:
        return clean_text(text)
    return f"[... {len(text) - limit} earlier characters cut ...]\n" + clean_text(text[-limit:])


def _elem(obj: Any) -> ET.Element:
    """The ElementTree element behind a junitparser object (junitparser uses xml.etree without lxml)."""
    return cast(ET.Element, obj._elem)


def junit_xml(result: RunResult) -> str:
    """The run's junit.xml as text."""
    return junit_report(result)[0]


def junit_report(result: RunResult) -> tuple[str, list[str]]:
    """The run's junit.xml and notes about check reports that could not be merged."""
    notes: list[str] = []
    task = clean_text(result.task)
    suite = TestSuite(task)
    if result.started_at:
        suite.timestamp = clean_text(result.started_at)
    for name, value in (
        ("run_id", result.run_id),
        ("model", result.model),
        ("status", result.status),
        ("exit_code", str(result.exit_code)),
        ("cost_usd", "unknown" if result.cost_usd is None else f"{result.cost_usd:.6f}"),
    ):
        suite.add_property(name, clean_text(value))

    cases: list[ET.Element] = [_agent_case(result, task)]
    cases += [_verify_case(v, task) for v in result.verify]
    for check in result.verify:
        if check.junit_xml is not None and check.junit_xml.strip():
            merged, note = _merged_cases(check, task)
            cases += merged
            if note:
                notes.append(note)
                log.warning("%s", note)

    suite_elem = _elem(suite)
    seen: dict[tuple[str, str], int] = {}
    for elem in cases:
        _make_unique(elem, seen)
        suite_elem.append(elem)
    if notes:
        err = ET.SubElement(suite_elem, "system-err")
        err.text = "\n".join(clean_text(n) for n in notes)
    _set_counts(suite_elem, cases, total_time=result.duration_s)
    return _serialize(suite_elem), notes


def _agent_case(result: RunResult, task: str) -> ET.Element:
    verify_time = sum(v.duration_s for v in result.verify)
    case = TestCase("agent", f"astra.{task}", round(max(0.0, result.duration_s - verify_time), 3))
    reason = result.reason or result.status
    outcome: Failure | Error | None = None
    if result.status == "limit":
        outcome = Failure(_one_line(reason), "limit")
    elif result.status == "failed" and not _verify_only_failure(result):
        outcome = Failure(_one_line(reason), "not_finished")
    elif result.status == "error":
        outcome = Error(_one_line(reason), clean_text(result.error_kind or "infrastructure"))
    elif result.status == "interrupted":
        outcome = Error(_one_line(reason), "interrupted")
    if outcome is not None:
        outcome.text = clean_text(reason)
        case.result = [outcome]
    return _elem(case)


def _verify_only_failure(result: RunResult) -> bool:
    """Whether a "failed" run failed only because a check failed (the agent itself finished).

    run.py words that case "verify failed: ..."; a failed check is then reported by the check's
    own testcase. Without a reason, a failed check is taken to be the cause.
    """
    if result.reason:
        return result.reason.startswith("verify failed")
    return any(not v.passed and v.ran for v in result.verify)


def _verify_case(check: VerifyResult, task: str) -> ET.Element:
    case = TestCase(clean_text(check.name), f"astra.{task}.verify", round(check.duration_s, 3))
    if not check.ran:
        case.result = [Skipped(_tail(check.output) or "not run")]
    elif not check.passed:
        if check.timed_out:
            message = "timed out"
        elif check.exit_code is None:
            message = "could not run"
        else:
            message = f"exit code {check.exit_code}"
        failure = Failure(message, "verify")
        failure.text = _tail(check.output)
        case.result = [failure]
    return _elem(case)


def _parse_untrusted(text: str, origin: str) -> ET.Element:
    """Parse XML a sandboxed command wrote. JUnit never needs a DTD, so any is refused (entity
    expansion attacks); size is capped."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MERGED_XML_BYTES:
        raise ValueError(f"{origin}: larger than {MAX_MERGED_XML_BYTES} bytes")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError(f"{origin}: contains a DTD, which JUnit files never need")
    try:
        return ET.fromstring(text)  # noqa: S314 - screened above; no DTD means no entities
    except ET.ParseError as exc:
        raise ValueError(f"{origin}: not well-formed XML: {exc}") from None


def redact_junit(text: str, redact: Callable[[str], str]) -> str:
    """A check's JUnit file with every text and attribute redacted *as a JUnit reader sees it*:
    parsed (character references decoded, CDATA sections joined), terminal escapes stripped,
    then redacted and written again. The raw text is redacted first (that also masks what would
    stop it from parsing, like `&#x1b;` inside a secret); a file that does not parse stays so
    (and will not be merged)."""
    text = redact(text)
    try:
        root = _parse_untrusted(text, "JUnit report")
    except ValueError:
        return text
    for elem in root.iter():
        if elem.text:
            elem.text = redact(clean_text(elem.text))
        if elem.tail:
            elem.tail = redact(clean_text(elem.tail))
        for key, value in list(elem.attrib.items()):
            elem.attrib[key] = redact(clean_text(value))
    return ET.tostring(root, encoding="unicode")


def _merged_cases(check: VerifyResult, task: str) -> tuple[list[ET.Element], str | None]:
    origin = f"JUnit report of check '{_one_line(check.name, 80)}'"
    try:
        root = _parse_untrusted(check.junit_xml or "", origin)
        if root.tag not in ("testsuites", "testsuite"):
            raise ValueError(f"{origin}: root element is <{_one_line(root.tag, 40)}>, not <testsuites>")
        # testcases are taken at any depth, so nested suites are flattened into ours
        default_classname = f"astra.{task}.{clean_text(check.name)}"
        cases = [_copy_case(c, default_classname) for c in root.iter("testcase")]
    except ValueError as exc:
        return [], f"not merged: {exc}"
    except Exception as exc:  # never crash the report on a bad file
        return [], f"not merged: {origin}: {type(exc).__name__}: {exc}"
    return cases, None


def _copy_case(src: ET.Element, default_classname: str) -> ET.Element:
    case = ET.Element("testcase")
    for key, value in src.attrib.items():
        if key in _CASE_ATTRS:
            case.set(key, value)
    case.set("name", src.get("name") or "unnamed")
    if not src.get("classname"):
        case.set("classname", default_classname)
    time = _float(src.get("time"))
    if time is None:
        case.attrib.pop("time", None)
    else:
        case.set("time", f"{time:.3f}")
    for child in src:
        if child.tag in _CASE_CHILDREN:
            case.append(copy.deepcopy(child))
    return case


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 and number != float("inf") else None


def _make_unique(case: ET.Element, seen: dict[tuple[str, str], int]) -> None:
    name, classname = case.get("name", ""), case.get("classname", "")
    count = seen.get((classname, name), 0) + 1
    seen[(classname, name)] = count
    if count > 1:
        new = f"{name} [{count}]"
        while (classname, new) in seen:
            count += 1
            new = f"{name} [{count}]"
        seen[(classname, new)] = 1
        case.set("name", new)


def _set_counts(suite: ET.Element, cases: Iterable[ET.Element], total_time: float) -> None:
    tests = failures = errors = skipped = 0
    for case in cases:
        tests += 1
        kinds = {child.tag for child in case}
        # one verdict per testcase, worst first, as JUnit readers count them
        if "error" in kinds:
            errors += 1
        elif "failure" in kinds:
            failures += 1
        elif "skipped" in kinds:
            skipped += 1
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{max(0.0, total_time):.3f}")


def _serialize(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _prefix_classnames(cases: list[ET.Element], task: str) -> None:
    for case in cases:
        classname = case.get("classname") or ""
        if classname == f"astra.{task}" or classname.startswith((f"astra.{task}.", f"{task}.")):
            continue
        case.set("classname", f"{task}.{classname}" if classname else task)


def merge_suites(xml_docs: list[str], notes: list[str] | None = None, *,
                 classname_prefixes: Sequence[str] | None = None) -> str:
    """One <testsuites> holding every <testsuite> of `xml_docs` (batch aggregates, SPEC §5).

    A document that cannot be read is left out and noted in `notes` (when given) and the log.
    `classname_prefixes` (one per document, a batch's task names): every testcase's classname
    starts with its task's name (`<task>.<classname>`; ours are `astra.<task>...` already), so the
    same test in two tasks is two rows in GitLab, Jenkins or junit2html, not one.
    """
    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time = 0.0
    for index, text in enumerate(xml_docs):
        try:
            doc = _parse_untrusted(text, f"report {index + 1}")
            if doc.tag not in ("testsuites", "testsuite"):
                raise ValueError(f"report {index + 1}: root element is <{_one_line(doc.tag, 40)}>")
            suites = list(doc.iter("testsuite"))  # the root itself when it is a <testsuite>
        except ValueError as exc:
            if notes is not None:
                notes.append(str(exc))
            log.warning("junit merge: %s", exc)
            continue
        for suite in suites:
            suite = copy.deepcopy(suite)
            for nested in [s for s in suite if s.tag == "testsuite"]:
                suite.remove(nested)  # nested suites are added on their own by iter() above
            cases = [c for c in suite if c.tag == "testcase"]
            if classname_prefixes is not None:
                _prefix_classnames(cases, classname_prefixes[index])
            suite_time = _float(suite.get("time"))
            if suite_time is None:
                suite_time = sum(_float(c.get("time")) or 0.0 for c in cases)
            _set_counts(suite, cases, suite_time)
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
            time += _float(suite.get("time")) or 0.0
            root.append(suite)
    for key, value in totals.items():
        if key != "skipped":  # junit-10.xsd has no `skipped` on <testsuites>
            root.set(key, str(value))
    root.set("time", f"{time:.3f}")
    return _serialize(root)
