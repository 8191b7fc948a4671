"""`python -m chargeback` runs the command line."""

from chargeback.cli import main

main()
