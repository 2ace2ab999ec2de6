"""Benchmarks: `python -m skel_jax.benchmark SUBCOMMAND [options]`.

Subcommands:
  ingest  read + parse + preprocess NTU `.skeleton` files: milliseconds per file on one core, and
          files per second over a process pool.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence

from skel_jax.data.ntu_skeleton import read_skeleton_file
from skel_jax.data.preprocess import preprocess_ntu


def ingest_file(path: str) -> int:
    """Reads, parses and preprocesses one `.skeleton` file.

    Top-level so that pool workers can unpickle it under any start method.

    Args:
        path: the file.

    Returns:
        The stored sample's frame count.
    """
    _, num_frames = preprocess_ntu(read_skeleton_file(path))
    return num_frames


def find_skeleton_files(manual_dir: str | os.PathLike, max_files: int | None) -> list[str]:
    """Lists the `.skeleton` files to benchmark.

    Args:
        manual_dir: directory searched recursively for `*.skeleton`.
        max_files: keep only the first max_files paths, or all when None.

    Returns:
        Sorted file paths.
    """
    files = sorted(str(p) for p in pathlib.Path(manual_dir).rglob("*.skeleton") if p.is_file())
    return files[:max_files] if max_files is not None else files


def measure_ingest(files: Sequence[str], num_workers: int) -> dict:
    """Times ingest_file over `files`.

    Args:
        files: non-empty list of `.skeleton` paths.
        num_workers: pool size for the throughput measurement.

    Returns:
        Dict with num_files, num_workers, ms_per_file (median over files, one process, after one
        warm-up file), ms_per_file_mean, and files_per_s (all files through the pool, timed after
        the workers have started and each has handled a warm-up task).
    """
    ingest_file(files[0])
    seconds = []
    for path in files:
        start = time.perf_counter()
        ingest_file(path)
        seconds.append(time.perf_counter() - start)

    # spawn: forking a parent that holds threads (JAX, a notebook) can deadlock the children.
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        pool.map(ingest_file, [files[0]] * num_workers, chunksize=1)
        start = time.perf_counter()
        pool.map(ingest_file, files, chunksize=max(1, len(files) // (8 * num_workers)))
        elapsed = time.perf_counter() - start
    return {
        "num_files": len(files),
        "num_workers": num_workers,
        "ms_per_file": 1e3 * statistics.median(seconds),
        "ms_per_file_mean": 1e3 * statistics.fmean(seconds),
        "files_per_s": len(files) / elapsed,
    }


def _run_ingest(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not os.path.isdir(args.manual_dir):
        parser.error(f"--manual_dir {args.manual_dir!r} is not a directory")
    files = find_skeleton_files(args.manual_dir, args.max_files)
    if not files:
        parser.error(f"no *.skeleton files below --manual_dir {args.manual_dir!r}")
    result = measure_ingest(files, args.num_workers)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"files                 {result['num_files']}\n"
              f"one core, ms/file     {result['ms_per_file']:.3f} median, "
              f"{result['ms_per_file_mean']:.3f} mean\n"
              f"{result['num_workers']} workers, files/s   {result['files_per_s']:.1f}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser.

    Returns:
        The parser, with one subcommand per benchmark; each sets `run(args, parser) -> int`.
    """
    parser = argparse.ArgumentParser(prog="python -m skel_jax.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="time reading + parsing + preprocessing NTU files")
    ingest.add_argument("--manual_dir", required=True, help="directory searched for *.skeleton")
    ingest.add_argument("--max_files", type=_positive_int, default=None,
                        help="use at most this many files (the first, sorted by path)")
    ingest.add_argument("--num_workers", type=_positive_int, default=os.cpu_count() or 1,
                        help="pool size for files/s (default: os.cpu_count())")
    ingest.add_argument("--json", action="store_true", help="print one JSON line")
    ingest.set_defaults(run=_run_ingest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one benchmark subcommand.

    Args:
        argv: command-line arguments without the program name; sys.argv[1:] when None.

    Returns:
        The exit status.

    Raises:
        SystemExit: on usage errors (status 2), with the message on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
