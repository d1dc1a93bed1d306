"""Errors raised by the test-run library; each message says what happened and what to do."""

from __future__ import annotations


class TestRunError(Exception):
    """Base class for every error raised by `phasegate.testrun`."""

    __test__ = False  # not a pytest test class, despite the name


class ReportError(TestRunError):
    """A JUnit XML report could not be read or is not a report phasegate accepts."""


class CheckoutError(TestRunError):
    """A clean checkout of the submitted commit could not be made."""


class SpawnError(TestRunError):
    """The test command could not be started at all (bad working directory, no /bin/sh)."""


class ConfigError(TestRunError):
    """The test-run settings are unusable (for example a junit_path outside the checkout)."""


class SandboxUnavailable(TestRunError):
    """No working sandbox on this machine, and the project did not opt out of it."""
