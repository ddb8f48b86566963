from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from junitparser import Error, Failure, JUnitXml, Skipped

from runner.reports.junit import OUTPUT_TAIL_CHARS, junit_report, junit_xml, merge_suites
from runner.result import VerifyResult

from .helpers import make_result

SCHEMA_PATH = Path(__file__).parent.parent / "data" / "junit-10.xsd"

SAMPLE_TESTS = """
import pytest

def test_one():
    assert 1 + 1 == 2

def test_two():
    assert "a" in "abc"

def test_broken():
    assert [] == [1], "empty list"

@pytest.mark.skip(reason="not today")
def test_later():
    pass
"""


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA_PATH))


@pytest.fixture(scope="module")
def pytest_junit(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real JUnit report: pytest run on a tiny test file (2 pass, 1 fail, 1 skip)."""
    work = tmp_path_factory.mktemp("sample")
    (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (work / "test_sample.py").write_text(SAMPLE_TESTS, encoding="utf-8")
    report = work / "report.xml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "test_sample.py",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one test fails on purpose
    return report.read_text(encoding="utf-8")


def parse(text: str) -> JUnitXml:
    return JUnitXml.fromstring(text.encode("utf-8"))


def only_suite(text: str):  # type: ignore[no-untyped-def]
    suites = list(parse(text))
    assert len(suites) == 1
    return suites[0]


def cases_by_name(text: str) -> dict[str, Any]:
    return {case.name: case for case in only_suite(text)}


def assert_counts_consistent(text: str) -> None:
    """The counts we wrote agree with what a reader counts from the testcases."""
    suite = only_suite(text)
    written = (suite.tests, suite.failures, suite.errors, suite.skipped)
    suite.update_statistics()
    assert written == (suite.tests, suite.failures, suite.errors, suite.skipped)


def test_limit_run_with_checks_and_merged_pytest_report(
    schema: xmlschema.XMLSchema, pytest_junit: str
) -> None:
    long_output = "HEAD-MARKER\n" + "x" * 10_000 + "\nTAIL-MARKER: 1 failed"
    result = make_result(
        "limit",
        verify=[
            VerifyResult("lint", True, 0, "ok", 1.0),
            VerifyResult("unit-tests", False, 1, long_output, 3.5, junit_xml=pytest_junit),
        ],
    )
    text, notes = junit_report(result)
    assert notes == []
    schema.validate(text)

    suite = only_suite(text)
    assert suite.name == "fix-empty-input"
    # agent + 2 checks + 4 pytest cases; failures: agent (limit), unit-tests, test_broken
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (7, 3, 0, 1)
    assert_counts_consistent(text)
    assert suite.time == pytest.approx(83.5)

    cases = cases_by_name(text)
    agent = cases["agent"]
    assert agent.classname == "astra.fix-empty-input"
    assert isinstance(agent.result[0], Failure)
    assert agent.result[0].message == "max_turns reached: 50 turns"
    assert agent.result[0].type == "limit"

    assert cases["lint"].is_passed and cases["lint"].classname == "astra.fix-empty-input.verify"
    unit = cases["unit-tests"].result[0]
    assert isinstance(unit, Failure) and unit.message == "exit code 1"
    assert "TAIL-MARKER: 1 failed" in unit.text
    assert "HEAD-MARKER" not in unit.text
    assert len(unit.text) < OUTPUT_TAIL_CHARS + 100

    # merged pytest cases keep their own classname and verdicts
    assert cases["test_one"].classname == "test_sample" and cases["test_one"].is_passed
    assert cases["test_broken"].is_failure
    assert isinstance(cases["test_later"].result[0], Skipped)


def test_success_run_agent_passes(schema: xmlschema.XMLSchema) -> None:
    text = junit_xml(make_result("success"))
    schema.validate(text)
    suite = only_suite(text)
    assert (suite.tests, suite.failures, suite.errors) == (3, 0, 0)
    assert all(case.is_passed for case in suite)


def test_verify_failure_fails_the_check_not_the_agent(schema: xmlschema.XMLSchema) -> None:
    text = junit_xml(make_result("failed"))
    schema.validate(text)
    cases = cases_by_name(text)
    assert cases["agent"].is_passed
    assert cases["unit-tests"].is_failure
    assert only_suite(text).failures == 1


def test_agent_that_did_not_finish_is_a_failure(schema: xmlschema.XMLSchema) -> None:
    result = make_result("failed", reason="the agent ended without finishing")
    text = junit_xml(result)
    schema.validate(text)
    agent = cases_by_name(text)["agent"].result[0]
    assert isinstance(agent, Failure) and agent.type == "not_finished"


@pytest.mark.parametrize(("status", "kind"), [("error", "sandbox"), ("interrupted", "interrupted")])
def test_infrastructure_error_and_interrupt_are_errors_not_failures(
    schema: xmlschema.XMLSchema, status: str, kind: str
) -> None:
    result = make_result(status, verify=[])
    text = junit_xml(result)
    schema.validate(text)
    suite = only_suite(text)
    assert (suite.tests, suite.failures, suite.errors) == (1, 0, 1)
    agent = cases_by_name(text)["agent"].result[0]
    assert isinstance(agent, Error)
    assert agent.type == kind
    assert agent.message == result.reason


@pytest.mark.parametrize(
    "bad",
    [
        "<testsuite><testcase name='a'",  # truncated
        "this is not xml at all",
        "<html><body>oops</body></html>",  # wrong root
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        "<testsuite><testcase name='&lol2;'/></testsuite>",  # entity expansion refused
        "",
    ],
)
def test_malformed_merged_report_is_noted_not_fatal(schema: xmlschema.XMLSchema, bad: str) -> None:
    result = make_result("success", verify=[VerifyResult("unit-tests", True, 0, "", 1.0, junit_xml=bad)])
    text, notes = junit_report(result)
    schema.validate(text)
    assert only_suite(text).tests == 2
    if bad:
        assert len(notes) == 1 and "unit-tests" in notes[0]
        err = ET.fromstring(text).find("system-err")
        assert err is not None and "unit-tests" in (err.text or "")


def test_names_are_unique_and_bad_times_dropped(schema: xmlschema.XMLSchema) -> None:
    merged = """<testsuites><testsuite name="a" tests="3">
      <testcase classname="m" name="t" time="0.5"/>
      <testcase classname="m" name="t" time="not-a-number"><failure message="boom">x</failure></testcase>
      <testcase name="agent"/>
      <testsuite name="nested" tests="1"><testcase classname="m" name="t"/></testsuite>
    </testsuite></testsuites>"""
    result = make_result(
        "success",
        verify=[
            VerifyResult("lint", True, 0, "", 1.0),
            VerifyResult("lint", True, 0, "", 1.0, junit_xml=merged),
        ],
    )
    text = junit_xml(result)
    schema.validate(text)
    keys = [(c.classname, c.name) for c in only_suite(text)]
    assert len(keys) == len(set(keys)) == 7
    assert ("astra.fix-empty-input.verify", "lint [2]") in keys
    assert ("m", "t [2]") in keys and ("m", "t [3]") in keys
    assert ("astra.fix-empty-input.lint", "agent") in keys  # merged case without classname
    assert_counts_consistent(text)


def test_control_characters_and_escapes_still_give_valid_xml(schema: xmlschema.XMLSchema) -> None:
    output = "\x1b[31mred\x1b[0m \x00 nul \x07 bell \ud800 surrogate \ufffe"
    result = make_result(
        "failed",
        task="t\x01ask",
        reason="verify failed: \x1b[1mx",
        verify=[VerifyResult("chk\x1b[0m", False, 2, output, 1.0)],
    )
    text = junit_xml(result)
    schema.validate(text)
    assert "\x1b" not in text and "\x00" not in text
    check = cases_by_name(text)["chk"].result[0]
    assert isinstance(check, Failure)
    assert "red" in check.text and "nul" in check.text and "surrogate" in check.text


def test_merge_suites_gives_one_testsuite_per_task(schema: xmlschema.XMLSchema, pytest_junit: str) -> None:
    one = junit_xml(make_result("success", task="task-a"))
    two = junit_xml(
        make_result(
            "limit",
            task="task-b",
            verify=[VerifyResult("unit-tests", False, 1, "no", 2.0, junit_xml=pytest_junit)],
        )
    )
    notes: list[str] = []
    text = merge_suites([one, two, "<broken"], notes)
    schema.validate(text)
    doc = parse(text)
    suites = list(doc)
    assert [s.name for s in suites] == ["task-a", "task-b"]
    assert [(s.tests, s.failures, s.errors, s.skipped) for s in suites] == [(3, 0, 0, 0), (6, 3, 0, 1)]
    root = ET.fromstring(text)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "3", "0")
    assert len(notes) == 1 and "report 3" in notes[0]


def test_merge_suites_of_nothing_is_valid(schema: xmlschema.XMLSchema) -> None:
    text = merge_suites([])
    schema.validate(text)
    assert ET.fromstring(text).get("tests") == "0"


def test_agent_testcase_counts_once_per_verdict() -> None:
    text = junit_xml(make_result("limit", verify=[]))
    verdicts = Counter(child.tag for case in ET.fromstring(text).iter("testcase") for child in case)
    assert verdicts == Counter({"failure": 1})
