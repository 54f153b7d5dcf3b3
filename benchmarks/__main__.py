"""Every benchmark runs one way: `python -m benchmarks NAME [options]` (or `make bench-NAME`).

NAME is `core`, `sinks`, `pipeline` or `api` (benchmarks/bench_NAME.py, each with a
`main(argv)`); the options are the benchmark's own (`python -m benchmarks core --help`). The
engine TOLLGATE_ENGINE asks for is chosen first, before the benchmark imports
`pipeline.billing`. The last line each benchmark prints is one JSON object. Benchmarks run from
a checkout: they are not installed.
"""

from __future__ import annotations

import importlib
import sys

from pipeline.tooling import compiled_engine

NAMES = ("core", "sinks", "pipeline", "api")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in NAMES:
        sys.exit(f"usage: python -m benchmarks {{{','.join(NAMES)}}} [options]")
    compiled_engine.select_from_env()
    module = importlib.import_module(f"benchmarks.bench_{argv[0]}")
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
