"""Run a project's tests on one commit and turn what happened into trustworthy evidence.

A pure library: no database, no sessions. `run_tests` is the entry point;
`run_command` is the hardened process runner underneath it.
"""

from phasegate.testrun.errors import (
    CheckoutError,
    ConfigError,
    ReportError,
    SpawnError,
    TestRunError,
)
from phasegate.testrun.evidence import TestRunEvidence, summarize
from phasegate.testrun.junit import JUnitReport, TestCaseResult, parse_junit
from phasegate.testrun.process import ProcessOutcome, env_for_tests, run_command
from phasegate.testrun.runner import run_tests

__all__ = [
    "CheckoutError",
    "ConfigError",
    "JUnitReport",
    "ProcessOutcome",
    "ReportError",
    "SpawnError",
    "TestCaseResult",
    "TestRunError",
    "TestRunEvidence",
    "env_for_tests",
    "parse_junit",
    "run_command",
    "run_tests",
    "summarize",
]
