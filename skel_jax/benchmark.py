"""Benchmarks: `python -m skel_jax.benchmark SUBCOMMAND [options]`.

Subcommands:
  ingest   read + parse + preprocess NTU `.skeleton` files: milliseconds per file on one core, and
           files per second over a process pool.
  train    the compiled ISC training step of a config: samples/s, ms/step, XLA's FLOPs per step
           and the fraction of the machine's measured matrix-multiply peak they reach.
  augment  the two pretraining views of a batch, on device: augmented pairs/s.
  eval     encoder inference on the test crop (features/s) and exact cosine k-NN on random
           features (queries/s).

  python -m skel_jax.benchmark train --config=configs/ntu60.py:xsub --batch_size=16 --steps=3
  python -m skel_jax.benchmark train --config=configs/demo.py --input=pipeline --json
  python -m skel_jax.benchmark train --config=configs/ntu60.py:xsub --steps=2 --profile_dir=/tmp/p
  python -m skel_jax.benchmark eval --config=configs/ntu60.py:xsub --representation=graph

`train` and `eval` accept config overrides such as `--config.model.compute_dtype=bfloat16`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from skel_jax.data.ntu_skeleton import read_skeleton_file
from skel_jax.data.preprocess import preprocess_ntu

# Examples in NTU-60 cross-subject: the k-NN benchmark's default bank and query set sizes.
NTU60_XSUB_TRAIN, NTU60_XSUB_TEST = 40091, 16487
# A placeholder epoch length for synthetic input: it only sets where the step decay falls.
_SYNTHETIC_STEPS_PER_EPOCH = 1000


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


def load_config(spec: str, overrides: Sequence[str] = ()):
    """Loads an experiment config from ``path.py[:arg]`` and applies ``--config.x=y`` overrides.

    Args:
        spec: config file, optionally followed by ``:`` and its argument, as for
            ``skel_jax.main --config``.
        overrides: ``--config.a.b=value`` strings; values are Python literals (``16``, ``(1, 2)``,
            ``'bfloat16'``) or, failing that, plain strings.

    Returns:
        The ConfigDict, locked so that a misspelt field is an error.

    Raises:
        ValueError: the file is missing or an override is malformed or names no field.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} not found")
    module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    config.lock()
    for override in overrides:
        name, equals, text = override.removeprefix("--config.").partition("=")
        if not override.startswith("--config.") or not equals or not name:
            raise ValueError(f"expected --config.FIELD=VALUE, got {override!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = name.split(".")
        node = config
        try:
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        except (KeyError, AttributeError, TypeError) as error:
            raise ValueError(f"cannot apply {override!r}: {error}") from None
    return config


def synthetic_batch(batch_size: int, max_frames: int, min_frames: int, seed: int = 0) -> dict:
    """A host batch shaped like the input pipeline's, with random joints and frame counts.

    Args:
        batch_size: rows.
        max_frames: stored frames per row.
        min_frames: smallest valid frame count drawn (at most max_frames).
        seed: NumPy seed.

    Returns:
        {"skeleton": float32 (B, max_frames, 2, 25, 3) zero past each row's frame count,
        "num_frames": int32 (B,)}.
    """
    import numpy as np

    from skel_jax.data import input_pipeline

    rng = np.random.default_rng(seed)
    num_frames = rng.integers(min(min_frames, max_frames), max_frames + 1, size=batch_size)
    skeleton = rng.normal(size=(batch_size, max_frames, *input_pipeline.FRAME_SHAPE))
    skeleton *= np.arange(max_frames)[None, :, None, None, None] < num_frames[:, None, None,
                                                                                None, None]
    return {"skeleton": skeleton.astype(np.float32), "num_frames": num_frames.astype(np.int32)}


def measure_peaks() -> dict:
    """The first device's measured float32 and bfloat16 matrix-multiply rates, in FLOP/s."""
    import jax.numpy as jnp

    from skel_jax import perf

    return {"peak_flops_float32": perf.matmul_peak(jnp.float32),
            "peak_flops_bfloat16": perf.matmul_peak(jnp.bfloat16)}


def _pipeline_batches(config, workdir: str, mesh) -> tuple[Callable[[], dict], int]:
    """Device batches from the config's real input pipeline, and its steps per epoch.

    The synthetic demo dataset is generated and built into ``workdir`` first when missing.
    """
    from skel_jax import sharding
    from skel_jax import train
    from skel_jax import train_step
    from skel_jax.data import input_pipeline

    data_dir = train.data_dir_of(config, workdir)
    if config.data.synthetic_clips:
        train.ensure_synthetic_dataset(config, data_dir)
    source = input_pipeline.load_source(config.data.dataset, config.data.train_split, data_dir)
    iterator = input_pipeline.train_iterator(
        source, global_batch_size=config.global_batch_size, seed=config.seed,
        max_frames=config.data.max_frames, read_threads=config.data.read_threads)

    def next_batch():
        batch = next(iterator)
        return sharding.put_batch({name: batch[name] for name in train_step.BATCH_FIELDS}, mesh)

    return next_batch, len(source) // config.global_batch_size


def measure_train(config, *, steps: int, input_kind: str, workdir: str,
                  profile_dir: str | None = None) -> dict:
    """Compiles the config's training step and times it.

    Each timed step includes fetching its batch (a fixed device batch for ``synthetic`` input; the
    next batch of the grain pipeline, copied to the devices, for ``pipeline``) and waits for the
    new state, so steps never overlap.

    Args:
        config: an experiment config (its ``global_batch_size`` is the batch benchmarked).
        steps: timed steps, after one untimed warm-up step.
        input_kind: ``synthetic`` or ``pipeline``.
        workdir: where the synthetic demo dataset is built for ``pipeline`` input.
        profile_dir: if set, ``steps`` further steps run under the JAX profiler, their trace is
            written there and summed per XLA operation (``profiling.op_breakdown``); the timed
            steps are not traced.

    Returns:
        Dict with samples_per_s (batch / median step time), step_ms (median), step_ms_mean,
        step_ms_min, compile_s; flops_per_step and flops_per_sample (XLA's cost analysis of one
        device's compiled program, which counts each loop body once) and achieved_flops;
        matmul_flops_per_step and matmul_flops_per_sample (products and convolutions with every
        loop iteration counted, see ``perf.matmul_flops``) and achieved_matmul_flops;
        peak_flops (measured matmul rate in the config's compute dtype), peak_flops_float32,
        peak_flops_bfloat16; peak_fraction and matmul_peak_fraction (achieved / peak of either
        count); batch_size, steps, input, representations, compute_dtype, devices, platform;
        with ``profile_dir``, ``profile`` (``profiling.op_breakdown`` per step).
    """
    import jax

    from skel_jax import config_lib
    from skel_jax import optim
    from skel_jax import perf
    from skel_jax import profiling
    from skel_jax import sharding
    from skel_jax import train_state
    from skel_jax import train_step

    config_lib.validate(config)
    mesh = sharding.make_mesh()
    batch_size = config.global_batch_size
    sharding.check_divisible(batch_size, mesh)
    device_batch = sharding.put_batch(
        synthetic_batch(batch_size // jax.process_count(), config.data.max_frames,
                        config.data.clip_frames, seed=config.seed), mesh)
    if input_kind == "pipeline":
        next_batch, steps_per_epoch = _pipeline_batches(config, workdir, mesh)
    else:
        next_batch, steps_per_epoch = (lambda: device_batch), _SYNTHETIC_STEPS_PER_EPOCH
    tx, schedule = optim.make_optimizer(config, max(steps_per_epoch, 1))
    defs, abstract_state = train_state.abstract(config, tx)
    state_shardings = sharding.state_shardings(mesh, abstract_state)
    state = jax.jit(lambda key: train_state.create(config, key, tx)[1],
                    out_shardings=state_shardings)(jax.random.key(config.seed))
    step_fn = train_step.compile_train_step(
        train_step.make_train_step(config, defs, tx, schedule), mesh, state_shardings)

    start = time.perf_counter()
    compiled = step_fn.lower(state, device_batch).compile()
    compile_s = time.perf_counter() - start
    flops = perf.compiled_flops(compiled)
    matmul_flops = perf.matmul_flops(step_fn, state, device_batch,
                                     platform=mesh.devices.flat[0].platform)

    def run_step():
        nonlocal state
        state, _ = jax.block_until_ready(compiled(state, next_batch()))

    seconds = []
    for step in range(steps + 1):
        start = time.perf_counter()
        run_step()
        if step:  # Step 0 is the warm-up.
            seconds.append(time.perf_counter() - start)
    timing = perf.summarize_seconds(seconds)
    profile = None
    if profile_dir:
        profiling.trace_calls(run_step, steps, profile_dir)
        profile = profiling.op_breakdown(
            profiling.load_trace_events(profile_dir),
            profiling.instruction_sources(compiled.as_text()), calls=steps)
    peaks = measure_peaks()
    peak = peaks[f"peak_flops_{config.model.compute_dtype}"]
    step_s = timing["ms"] / 1e3
    result = {
        "samples_per_s": batch_size / step_s,
        "step_ms": timing["ms"], "step_ms_mean": timing["ms_mean"],
        "step_ms_min": timing["ms_min"], "compile_s": compile_s,
        "flops_per_step": flops, "flops_per_sample": flops / batch_size,
        "matmul_flops_per_step": matmul_flops,
        "matmul_flops_per_sample": matmul_flops / batch_size,
        "achieved_flops": flops / step_s, "achieved_matmul_flops": matmul_flops / step_s,
        "peak_flops": peak, **peaks,
        "peak_fraction": flops / step_s / peak,
        "matmul_peak_fraction": matmul_flops / step_s / peak,
        "batch_size": batch_size, "steps": steps, "input": input_kind,
        "representations": config.representations,
        "compute_dtype": config.model.compute_dtype,
        "devices": mesh.size, "platform": jax.devices()[0].platform,
    }
    if profile is not None:
        result["profile"] = profile
    return result


def measure_augment(*, batch_size: int, max_frames: int, clip_frames: int, steps: int) -> dict:
    """Times `augment.two_views` on a device batch, jitted, with new random draws every call.

    Args:
        batch_size: samples per call; a multiple of the device count.
        max_frames: stored frames per sample.
        clip_frames: frames of each view.
        steps: timed calls, after one untimed warm-up call.

    Returns:
        Dict with pairs_per_s (batch / median call time), batch_ms (median), batch_ms_mean,
        batch_ms_min, batch_size, max_frames, clip_frames and steps.
    """
    import jax
    import jax.numpy as jnp

    from skel_jax import augment
    from skel_jax import perf
    from skel_jax import sharding

    mesh = sharding.make_mesh()
    sharding.check_divisible(batch_size, mesh)
    batch = sharding.put_batch(synthetic_batch(batch_size // jax.process_count(), max_frames,
                                               clip_frames), mesh)
    seed_key = jax.random.key(0)

    @jax.jit
    def views(step, skeleton, num_frames):
        keys = augment.sample_keys(seed_key, step, jnp.arange(skeleton.shape[0]))
        return augment.two_views(keys, skeleton, num_frames, clip_frames)

    jax.block_until_ready(views(0, batch["skeleton"], batch["num_frames"]))
    seconds = [perf.block_time(views, step, batch["skeleton"], batch["num_frames"])[0]
               for step in range(1, steps + 1)]
    timing = perf.summarize_seconds(seconds)
    return {"pairs_per_s": batch_size / (timing["ms"] / 1e3), "batch_ms": timing["ms"],
            "batch_ms_mean": timing["ms_mean"], "batch_ms_min": timing["ms_min"],
            "batch_size": batch_size, "max_frames": max_frames, "clip_frames": clip_frames,
            "steps": steps}


def measure_eval(config, *, representation: str, batch_size: int, steps: int, num_train: int,
                 num_test: int, num_classes: int = 60) -> dict:
    """Times encoder inference on test crops and an exact cosine k-NN on random features.

    Args:
        config: experiment config giving the encoder's architecture (weights are random).
        representation: ``seq``, ``graph`` or ``image``.
        batch_size: clips per inference call; a multiple of the device count.
        steps: timed inference calls and k-NN passes, each after one untimed warm-up.
        num_train: k-NN bank size (random unit features of the encoder's width).
        num_test: k-NN queries per pass.
        num_classes: labels of the bank.

    Returns:
        Dict with features_per_s, feature_batch_ms (median per inference call),
        knn_queries_per_s and knn_ms (median per pass over all queries, k = 1, including the
        host-device copies), feature_dim, batch_size, num_train, num_test and representation.
    """
    import jax
    import numpy as np

    from skel_jax import encoders
    from skel_jax import perf
    from skel_jax import sharding
    from skel_jax.evaluation import features
    from skel_jax.evaluation import knn

    mesh = sharding.make_mesh()
    sharding.check_divisible(batch_size, mesh)
    defn, _ = encoders.abstract(config, representation)
    variables = jax.jit(lambda key: encoders.create(config, representation, key)[1],
                        out_shardings=sharding.replicated(mesh))(jax.random.key(config.seed))
    batch = sharding.put_batch(synthetic_batch(batch_size // jax.process_count(),
                                               config.data.max_frames, config.data.clip_frames),
                               mesh)
    feature_fn = features.make_feature_fn(defn, mesh, config.data.clip_frames)
    feature_times = perf.repeat_time(feature_fn, variables, batch["skeleton"],
                                     batch["num_frames"], repeats=steps)
    feature_dim = feature_fn(variables, batch["skeleton"], batch["num_frames"]).shape[-1]

    rng = np.random.default_rng(0)
    bank = rng.normal(size=(num_train, feature_dim)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=num_train).astype(np.int32)
    queries = rng.normal(size=(num_test, feature_dim)).astype(np.float32)
    knn_times = perf.repeat_time(
        lambda: knn.knn_predict(bank, labels, queries, (1,), num_classes, mesh=mesh),
        repeats=steps)
    feature_timing, knn_timing = perf.summarize_seconds(feature_times), perf.summarize_seconds(
        knn_times)
    return {"features_per_s": batch_size / (feature_timing["ms"] / 1e3),
            "feature_batch_ms": feature_timing["ms"],
            "knn_queries_per_s": num_test / (knn_timing["ms"] / 1e3), "knn_ms": knn_timing["ms"],
            "feature_dim": int(feature_dim), "batch_size": batch_size, "num_train": num_train,
            "num_test": num_test, "representation": representation}


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"
        print(f"{name:24s}{value}")


def _config_or_error(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from skel_jax import config_lib

    try:
        config = load_config(args.config, args.overrides)
        if getattr(args, "batch_size", None):
            config.global_batch_size = args.batch_size
        config_lib.validate(config)
    except ValueError as error:
        parser.error(str(error))
    return config


def _quiet_if_json(as_json: bool) -> contextlib.AbstractContextManager:
    """Sends stray prints (TFDS reports dataset builds on stdout) to stderr in --json mode."""
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = _config_or_error(args, parser)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_if_json(args.json))
        workdir = args.workdir or stack.enter_context(tempfile.TemporaryDirectory())
        result = measure_train(config, steps=args.steps, input_kind=args.input, workdir=workdir,
                               profile_dir=args.profile_dir)
    # The JSON line keeps the breakdown as a field; the table mode prints it as a table.
    profile = None if args.json else result.pop("profile", None)
    if profile:
        from skel_jax import profiling

        print(profiling.format_breakdown(profile, result["step_ms"]))
    _print_result({"config": args.config, **result}, args.json)
    return 0


def _run_augment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    del parser
    with _quiet_if_json(args.json):
        result = measure_augment(batch_size=args.batch_size, max_frames=args.max_frames,
                                 clip_frames=args.clip_frames, steps=args.steps)
    _print_result(result, args.json)
    return 0


def _run_eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from skel_jax import config_lib

    config = _config_or_error(args, parser)
    names = config_lib.representation_names(config.representations)
    representation = args.representation or names[0]
    with _quiet_if_json(args.json):
        result = measure_eval(config, representation=representation,
                              batch_size=args.batch_size, steps=args.steps,
                              num_train=args.num_train, num_test=args.num_test)
    _print_result({"config": args.config, **result}, args.json)
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
    ingest.set_defaults(run=_run_ingest, accepts_overrides=False)

    train = commands.add_parser(
        "train", help="time the compiled training step of a config",
        epilog="Config fields can be overridden with --config.FIELD=VALUE.")
    train.add_argument("--config", required=True, help="config file, e.g. configs/ntu60.py:xsub")
    train.add_argument("--batch_size", type=_positive_int, default=None,
                       help="global batch size (default: the config's)")
    train.add_argument("--steps", type=_positive_int, default=5,
                       help="timed steps after one warm-up step")
    train.add_argument("--input", choices=("synthetic", "pipeline"), default="synthetic",
                       help="a fixed random batch already on device, or the config's grain "
                            "pipeline (its dataset must be built, or be the synthetic demo)")
    train.add_argument("--workdir", default=None,
                       help="where the synthetic demo dataset is built (default: a temporary "
                            "directory)")
    train.add_argument("--profile_dir", default=None,
                       help="also trace --steps more steps with the JAX profiler into this "
                            "directory and print where their time goes, per XLA operation")
    train.add_argument("--json", action="store_true", help="print one JSON line")
    train.set_defaults(run=_run_train, accepts_overrides=True)

    augment = commands.add_parser("augment", help="time the two pretraining views on device")
    augment.add_argument("--batch_size", type=_positive_int, default=64)
    augment.add_argument("--max_frames", type=_positive_int, default=300,
                         help="stored frames per sample")
    augment.add_argument("--clip_frames", type=_positive_int, default=64,
                         help="frames of each view")
    augment.add_argument("--steps", type=_positive_int, default=10,
                         help="timed batches after one warm-up batch")
    augment.add_argument("--json", action="store_true", help="print one JSON line")
    augment.set_defaults(run=_run_augment, accepts_overrides=False)

    evaluate = commands.add_parser(
        "eval", help="time encoder inference and cosine k-NN",
        epilog="Config fields can be overridden with --config.FIELD=VALUE.")
    evaluate.add_argument("--config", required=True, help="config file giving the encoder")
    evaluate.add_argument("--representation", choices=("seq", "graph", "image"), default=None,
                          help="encoder to time (default: the config's first)")
    evaluate.add_argument("--batch_size", type=_positive_int, default=64,
                          help="clips per inference call")
    evaluate.add_argument("--steps", type=_positive_int, default=5,
                          help="timed inference calls and k-NN passes")
    evaluate.add_argument("--num_train", type=_positive_int, default=NTU60_XSUB_TRAIN,
                          help="k-NN bank size (default: NTU-60 x-sub train)")
    evaluate.add_argument("--num_test", type=_positive_int, default=NTU60_XSUB_TEST,
                          help="k-NN queries (default: NTU-60 x-sub test)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON line")
    evaluate.set_defaults(run=_run_eval, accepts_overrides=True)
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
    args, extra = parser.parse_known_args(argv)
    if extra and not args.accepts_overrides:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    return args.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
