"""Command line interface (being built; see issue 2)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .version import version_string

    parser = argparse.ArgumentParser(prog="cisfix")
    parser.add_argument("--version", action="version", version=version_string())
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
