"""``python -m famekit.datasets info [NAME ...]``: print the dataset statistics table.

Without names it shows the embedded default and every source already downloaded (nothing is
fetched); with names it loads each one, downloading and caching it first if needed.
Bad input (an unknown name, no network, a checksum mismatch) prints one line
``famekit: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from famekit.datasets.stats import add_info_arguments
from famekit.errors import FamekitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m famekit.datasets",
                                     description="famekit dataset tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="statistics table (users, items, interactions, lengths, "
                          "density, metadata coverage)")
    add_info_arguments(info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from famekit.datasets.stats import default_info_names, format_table, statistics_table

    try:
        names = args.names or default_info_names(args.cache_dir)
        table = statistics_table(names, cache_dir=args.cache_dir,
                                 progress=not args.no_progress)
    except FamekitError as e:
        print(f"famekit: error: {e}", file=sys.stderr)
        return 2
    print(table.to_csv() if args.csv else format_table(table), end="" if args.csv else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
