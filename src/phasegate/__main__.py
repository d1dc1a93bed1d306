"""`python -m phasegate`: the CLI, for when the `phasegate` script is not on PATH."""

from phasegate.entrypoints.cli import main

main()
