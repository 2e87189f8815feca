"""Run every scenario with batchkit and its peers side by side and print a markdown table.

    python3 -m benchmarks.run --quick            # ~7 minutes on a 2-core machine (the 1M-file tree once more)
    python3 -m benchmarks.run                    # full sizes and more rounds
    python3 -m benchmarks.run --quick --write-readme   # also update benchmarks/README.md

Run it from the repository root (the workers import ``benchmarks.workloads``).

``--only tiny,cpu`` picks scenarios (tiny, dask, cpu, io, rss, big, startup, cold, checksum, scale,
watch, redact, queue); ``--json FILE`` saves the raw round times. Targets that are not met are reported, not
fatal: the exit status is 0 unless the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import big, checksum, coldstart, machine, redact, rss, startup, watch
from . import queue as queue_bench
from .notes import DIAGNOSES, READING, SCENARIO_NOTES
from .peers import Shared
from .scenarios import MAP_SCENARIOS, SIZES, Section, Sizes, run_map, targets
from .table import markdown_table, targets_table, timing_cells

ORDER = ("tiny", "dask", "cpu", "io", "rss", "big", "startup", "cold", "checksum", "scale", "watch", "redact",
         "queue")
README = Path(__file__).with_name("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
Log = Callable[[str], None]


def map_section(key: str, sizes: Sizes, shared: Shared, log: Log) -> Section:
    """One of the map-style scenarios (tiny, dask, cpu, io)."""
    scenario = MAP_SCENARIOS[key](sizes)
    timings = run_map(scenario, sizes, shared, log)
    header, cells = timing_cells(timings, scenario.ref)
    return Section(key, scenario.title, scenario.about, header, cells, targets(key, timings), [], timings)


def rss_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """Parent peak RSS of ``bk.imap`` over a long generator."""
    header, cells, tgts, timings = rss.run(sizes.rss, log, context=sizes.full_peers)
    small, large = sizes.rss
    return Section("rss", "Memory: imap over a generator",
                   f"`bk.imap(x * 2, generator)` of {small:,} and {large:,} items, process backend, "
                   "2 workers, ordered; each in a fresh process.", header, cells, tgts, [], timings)


def big_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """Ten million tiny items: run and imap against Pool.map, throughput and the parent's memory."""
    header, cells, tgts, timings, notes = big.run(sizes.big, sizes.big_rounds, log)
    return Section("big", f"{sizes.big:,} tiny items: the parent's cost per item",
                   f"`x * 2` over `range({sizes.big:,})`, 2 workers, warm pools; throughput rounds interleaved, "
                   "memory in fresh processes.", header, cells, tgts, notes, timings)


def cold_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """Short runs from a fresh interpreter, against a fork Pool and joblib."""
    timings, tgts, notes = coldstart.run(sizes.cold_rounds, log)
    header, cells = timing_cells(timings, None)
    cells = [row[:4] + row[6:] for row in cells]  # no items/s nor ratio: ten items measure start-up, not speed
    header = header[:4] + header[6:]
    return Section("cold", "Short runs from a fresh interpreter",
                   "Each row a new process from exec to exit: interpreter, imports, starting the workers, ten items, "
                   "shutting down.", header, cells, tgts, notes, timings)


def scale_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """The checksum job at 10 × the files: wall and the parent's memory."""
    header, cells, tgts, timings = checksum.scale(sizes.files, sizes.files_large, sizes.scale_rounds, log)
    return Section("scale", "File runs at scale",
                   f"`batchkit run checksum` over {sizes.files:,} and {sizes.files_large:,} files of 100 B–4 KiB "
                   f"({checksum.PER_DIR} per directory), 2 workers; the parent's peak RSS of the CLI and of a "
                   "streaming run.", header, cells, tgts, [], timings)


def startup_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """``import batchkit`` and the CLI's light commands."""
    header, cells, tgts, timings = startup.run(sizes.startup_rounds, log)
    return Section("startup", "Start-up: import and CLI", "Each command a fresh process.", header, cells,
                   tgts, [], timings)


def checksum_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """The checksum job through the CLI against xargs and GNU parallel."""
    timings, tgts, notes = checksum.run(sizes.files, sizes.file_rounds, log)
    header, cells = timing_cells(timings, "batchkit run checksum --workers 2",
                                 ratio_label="batchkit (journal on) speed ÷ this")
    return Section("checksum", "Checksum job over a file tree (CLI)",
                   f"sha256 of {sizes.files:,} files of 100 B–4 KiB ({checksum.PER_DIR} per directory), "
                   "2 workers, manifest to a file.", header, cells, tgts, notes, timings)


def watch_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """``bk.files(watch=True)``: latency from a file's close to its yield, start-up over a backlog, idle cost."""
    header, cells, tgts, timings, notes = watch.run(sizes.name, log)
    return Section("watch", "Watching a directory: latency, backlog start-up, idle cost",
                   "`bk.files(root, watch=True)`: files written by another process into a watched directory "
                   "(settle 2 s), through OS events and polling; the checksum tree as a backlog at start, "
                   "against a plain `bk.files` walk; CPU while idle.", header, cells, tgts, notes, timings)


def redact_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """``redact_text`` on adversarial text of 1k, 10k and 100k characters (issue 11)."""
    header, cells, tgts, timings, notes = redact.run(max(sizes.rounds, 5) if sizes.name != "smoke" else 1, log)
    return Section("redact", "Redaction: secrets masked in linear time",
                   "`batchkit.secrets.redact_text` in this process, on text built to be slow for it; no secret "
                   "environment values set.", header, cells, tgts, notes, timings)


def queue_section(sizes: Sizes, shared: Shared, log: Log) -> Section:
    """The durable queue: items/s put (one at a time, in bulk) and consumed."""
    header, cells, timings = queue_bench.run(sizes.name, sizes.rounds, log)
    return Section("queue", "Durable queue: put and consume (tiny items)",
                   "`bk.Queue` in a fresh SQLite file each round; consuming runs the engine over a "
                   "`QueueSource` with a `QueueSink`, `x * 2` on 2 threads.", header, cells, [], [], timings)


def build(key: str, sizes: Sizes, shared: Shared, log: Log) -> Section:
    """Run scenario ``key``; a scenario that breaks becomes a section that says so."""
    try:
        if key in MAP_SCENARIOS:
            return map_section(key, sizes, shared, log)
        return {"rss": rss_section, "big": big_section, "cold": cold_section, "scale": scale_section,
                "startup": startup_section, "checksum": checksum_section,
                "watch": watch_section, "redact": redact_section, "queue": queue_section}[key](sizes, shared, log)
    except Exception as exc:  # report it in the table and carry on with the other scenarios
        return Section(key, key, f"**failed**: {type(exc).__name__}: {exc}")


def render(sections: list[Section], sizes: Sizes, elapsed: float, loads: tuple[str, str],
           when: datetime) -> str:
    """The whole results document, in markdown."""
    out = [f"### Results of {when:%Y-%m-%d %H:%M} UTC — `{sizes.name}` mode, {elapsed:.0f} s", ""]
    info = machine.describe() + [("load average (1/5/15 min)", f"{loads[0]} at start, {loads[1]} at end")]
    out += [markdown_table(["machine", ""], info), ""]
    all_targets = [t for s in sections for t in s.targets]
    if all_targets:
        out += ["#### Targets", "", targets_table(all_targets), ""]
    out += ["#### How to read the tables", ""] + [f"- {line}" for line in READING] + [""]
    for s in sections:
        out += [f"#### {s.title}", "", s.about, ""]
        if s.cells:
            out += [markdown_table(s.header, s.cells), ""]
        notes = SCENARIO_NOTES.get(s.key, []) + s.notes
        if any(t.met is False for t in s.targets) and s.key in DIAGNOSES:
            notes.append(f"**Why a target is missed:** {DIAGNOSES[s.key]}")
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_readme(text: str, path: Path = README) -> None:
    """Replace the results block of ``path`` (``benchmarks/README.md``) with ``text``."""
    doc = path.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{path}: no {START} ... {END} block to replace")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}{END}{tail}")


def _prepare_environment() -> str:
    # Workers started by spawn/loky/Dask must import `benchmarks.workloads` by reference.
    root = str(Path(__file__).resolve().parent.parent)
    paths = os.environ.get("PYTHONPATH", "")
    if root not in paths.split(os.pathsep):
        os.environ["PYTHONPATH"] = root + (os.pathsep + paths if paths else "")
    if root not in sys.path:
        sys.path.insert(0, root)
    # Fresh processes are measured as users run an installed package: with its bytecode cached.
    # (PYTHONDONTWRITEBYTECODE, set in some shells and CI, would recompile batchkit's ~60 modules
    # from source in every process: ≈ 35 ms of each start.) The cache goes under $TMPDIR, not
    # into the source tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "batchkit-bench", "pycache"))
    # Nothing measured here may touch the user's own journal.
    home = tempfile.mkdtemp(prefix="batchkit-bench-home-")
    os.environ["BATCHKIT_HOME"] = home
    return home


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of the script."""
    p = argparse.ArgumentParser(prog="python3 -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="quick mode (same as --size quick): < 3 min on 2 cores")
    p.add_argument("--size", choices=sorted(SIZES), default=None, help="sizes: full (default), quick, smoke")
    p.add_argument("--only", default=",".join(ORDER), help=f"comma-separated scenarios from {','.join(ORDER)}")
    p.add_argument("--write-readme", nargs="?", const=str(README), default=None, metavar="PATH",
                   help="put the table into benchmarks/README.md (or PATH) between the results markers")
    p.add_argument("--json", metavar="FILE", help="also save the raw round times as JSON")
    args = p.parse_args(argv)
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in args.only if k not in ORDER]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(ORDER)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print the table; return the exit status."""
    args = parse_args(argv)
    sizes = SIZES[args.size or ("quick" if args.quick else "full")]
    home = _prepare_environment()
    try:
        return _run(args, sizes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(args: argparse.Namespace, sizes: Sizes) -> int:
    when = datetime.now(timezone.utc)
    load_start = machine.load()
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    shared = Shared()
    sections = []
    try:
        for key in (k for k in ORDER if k in args.only):
            log(f"{key}")
            sections.append(build(key, sizes, shared, log))
    finally:
        shared.close()
    elapsed = time.perf_counter() - started
    text = render(sections, sizes, elapsed, (load_start, machine.load()), when)
    print(text)
    if args.write_readme:
        write_readme(text, Path(args.write_readme))
        log(f"wrote {args.write_readme}")
    if args.json:
        raw = {s.key: [{"name": t.name, "items": t.items, "times": t.times, "skipped": t.skipped, **t.extra}
                       for t in s.timings] for s in sections}
        Path(args.json).write_text(json.dumps({"when": when.isoformat(), "size": sizes.name, "results": raw},
                                              indent=1))
    broken = [s.key for s in sections if not s.cells]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
