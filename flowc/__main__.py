"""Command line: ``python -m flowc cache info`` and ``python -m flowc cache clear``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m flowc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cache_p = sub.add_parser("cache", help="inspect or empty the compile cache")
    cache_p.add_argument("action", choices=("info", "clear"))
    args = parser.parse_args(argv)

    from flowc.kernels import cache

    if args.action == "info":
        for name, value in cache.info().items():
            print(f"{name}: {value}")
    else:
        n = cache.clear()
        print(f"removed {n} entries from {cache.cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
