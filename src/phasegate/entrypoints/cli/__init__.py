"""The `phasegate` command line. Every command calls the orchestrator; errors are one line.

Commands live in the modules below by theme; importing them registers them on `cli`.
"""

from phasegate.entrypoints.cli import (  # noqa: F401  (registers)
    admin,
    merging,
    project,
    servers,
    sessions,
)
from phasegate.entrypoints.cli.base import cli, main

__all__ = ["cli", "main"]
