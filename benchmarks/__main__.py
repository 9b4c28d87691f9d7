"""All benchmarks, one table per suite: `make bench`, or `python -m benchmarks signer storage`.

Each suite is a module of this package with a `main()`; BENCH_N scales sample sizes.
"""

from __future__ import annotations

import importlib
import sys

SUITES = ("signer", "storage", "operator", "tsa", "preservation", "workflow", "webhooks", "pages")


def main(names: list[str]) -> None:
    for name in names or SUITES:
        if name not in SUITES:
            raise SystemExit(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                print(f"== {name}: not built yet ==")
                continue
            raise
        print(f"== {name} ==")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
