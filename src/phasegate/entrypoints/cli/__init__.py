"""The `phasegate` command line. Every command calls the orchestrator; errors are one line.

Commands live in the modules below by theme; importing them registers them on `cli`.
"""

from phasegate.entrypoints.cli import admin, project, servers, sessions  # noqa: F401  (registers)
from phasegate.entrypoints.cli.base import cli, main

__all__ = ["cli", "main"]
