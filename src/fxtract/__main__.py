"""``python -m fxtract``: the command line (see ``fxtract --help``)."""

from ._cli import main

if __name__ == "__main__":
    main(prog_name="fxtract")
