"""`python -m kaizen` runs the command line (also what torchrun launches)."""

from kaizen.cli import main

main()
