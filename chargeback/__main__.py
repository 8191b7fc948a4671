"""`python -m chargeback` runs the command line."""

from chargeback.cli import main

if __name__ == "__main__":
    main()
