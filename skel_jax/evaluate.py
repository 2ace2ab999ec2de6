r"""Evaluates a pretrained encoder downstream (method.md §7).

  python -m skel_jax.evaluate --workdir=DIR --protocol=linear --encoder=graph
  python -m skel_jax.evaluate --workdir=DIR --protocol=knn --encoder=seq --k=1,10,20
  python -m skel_jax.evaluate --workdir=DIR --protocol=semi --encoder=graph \
      --label_fraction=0.01,0.1 --seeds=3
  python -m skel_jax.evaluate --workdir=DIR --protocol=finetune --encoder=graph --random_init
  python -m skel_jax.evaluate --workdir=DIR --protocol=linear --encoder=graph --watch \
      --config.linear.epochs=10

The dataset, representations and model sizes come from the training config saved with the
checkpoint; ``--config.<field>=<value>`` overrides the evaluation settings (see
``skel_jax.evaluation.default_config``: ``linear.*``, ``finetune.*``, ``eval_batch_size``,
``dataset``, ``data_dir``, ``watch.*``, ...). Results go to ``DIR/eval/`` (see
``skel_jax.evaluation.report``). Works on work directories written by training and by
``skel_jax.import_torch`` alike.
"""

import sys

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from skel_jax import checkpointing
from skel_jax import cli
from skel_jax import config_lib
from skel_jax import distributed
from skel_jax import evaluation


def _define_flags() -> None:
    # Defined only when run as a program, so that importing this module next to other binaries
    # cannot clash on flag names.
    config_flags.DEFINE_config_dict("config", evaluation.default_config(), "Evaluation settings.",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "Work directory holding the checkpoints.",
                        required=True)
    flags.DEFINE_enum("protocol", None, evaluation.PROTOCOLS, "Evaluation protocol.",
                      required=True)
    flags.DEFINE_enum("encoder", None, config_lib.SINGLES, "Which query encoder to evaluate.",
                      required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
    flags.DEFINE_list("label_fraction", [str(f) for f in evaluation.DEFAULT_LABEL_FRACTIONS],
                      "semi: comma-separated shares of the labels, each in (0, 1].")
    flags.DEFINE_integer("seeds", evaluation.DEFAULT_NUM_SEEDS,
                         "semi: label subsets (seeds) per fraction.")
    flags.DEFINE_list("k", [str(k) for k in evaluation.DEFAULT_KS],
                      "knn: comma-separated neighbour counts; the first is the headline.")
    flags.DEFINE_bool("random_init", False,
                      "Evaluate an untrained encoder of the same architecture.")
    flags.DEFINE_bool("watch", False, "Evaluate every new checkpoint as training writes it.")
    distributed.define_flags()


def _numbers(name, values, kind):
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--{name} takes comma-separated {kind.__name__}s; got "
                             f"{','.join(values)!r}.") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    if args.watch and args.step is not None:
        raise app.UsageError("--watch evaluates every step; it cannot be combined with --step.")
    cli.quiet_library_info_logs()
    distributed.initialize_from_flags()
    kwargs = dict(config=args.config, random_init=args.random_init,
                  ks=_numbers("k", args.k, int),
                  label_fractions=_numbers("label_fraction", args.label_fraction, float),
                  num_seeds=args.seeds)
    try:
        if args.watch:
            summaries = evaluation.watch(args.workdir, args.protocol, args.encoder, **kwargs)
        else:
            summaries = [evaluation.evaluate(args.workdir, args.protocol, args.encoder,
                                             step=args.step, **kwargs)]
    except (FileNotFoundError, ValueError, checkpointing.CheckpointReadError) as error:
        sys.exit(f"evaluate: {error}")
    # Every process holds the same summaries; under srun one copy per task would interleave.
    if jax.process_index() == 0:
        for summary in summaries:
            print(evaluation.format_summary(summary))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
