"""``python3 -m benchmarks.peak OUT batchkit-args...``: the ``batchkit`` command, in this process, and
its peak RSS (``VmHWM``, this process only: the CLI's parent, not its workers) written to ``OUT`` as
JSON when it exits. The exit status is the command's.
"""

from __future__ import annotations

import json
import sys

from .rss import peak_rss_mb


def main(argv: list[str]) -> int:
    """Run ``batchkit ARGV[1:]``; write ``{"peak_mb": ...}`` to ``ARGV[0]``."""
    out, args = argv[0], argv[1:]
    from batchkit.cli import main as cli

    code: int | str | None = 0
    try:
        cli(args)
    except SystemExit as exc:
        code = exc.code
    with open(out, "w") as f:
        json.dump({"peak_mb": peak_rss_mb()}, f)
    return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
