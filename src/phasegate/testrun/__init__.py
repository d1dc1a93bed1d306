"""Run a project's tests on one commit and turn what happened into trustworthy evidence.

A pure library: no database, no sessions. `run_tests` is the entry point;
`run_command` is the hardened process runner underneath it.
"""

from phasegate.testrun.errors import (
    CheckoutError,
    ConfigError,
    ReportError,
    SandboxUnavailable,
    SpawnError,
    TestRunError,
)
from phasegate.testrun.evidence import TestRunEvidence, summarize
from phasegate.testrun.inventory import TestInventory, collected_inventory, static_inventory
from phasegate.testrun.junit import JUnitReport, TestCaseResult, parse_junit
from phasegate.testrun.process import ProcessOutcome, env_for_tests, run_command
from phasegate.testrun.runner import TamperScan, run_tests, scrub_tokens
from phasegate.testrun.sandbox import Bind, Limits, Sandbox, bwrap_binary

__all__ = [
    "Bind",
    "CheckoutError",
    "ConfigError",
    "JUnitReport",
    "Limits",
    "ProcessOutcome",
    "ReportError",
    "Sandbox",
    "SandboxUnavailable",
    "SpawnError",
    "TamperScan",
    "TestCaseResult",
    "TestInventory",
    "TestRunError",
    "TestRunEvidence",
    "bwrap_binary",
    "collected_inventory",
    "env_for_tests",
    "parse_junit",
    "run_command",
    "run_tests",
    "scrub_tokens",
    "static_inventory",
    "summarize",
]
