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

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import evaluation

_CONFIG = config_flags.DEFINE_config_dict("config", evaluation.default_config(),
                                          "Evaluation settings.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory holding the checkpoints.",
                               required=True)
_PROTOCOL = flags.DEFINE_enum("protocol", None, evaluation.PROTOCOLS, "Evaluation protocol.",
                              required=True)
_ENCODER = flags.DEFINE_enum("encoder", None, config_lib.SINGLES,
                             "Which query encoder to evaluate.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
_LABEL_FRACTION = flags.DEFINE_list(
    "label_fraction", [str(f) for f in evaluation.DEFAULT_LABEL_FRACTIONS],
    "semi: comma-separated shares of the labels, each in (0, 1].")
_SEEDS = flags.DEFINE_integer("seeds", evaluation.DEFAULT_NUM_SEEDS,
                              "semi: label subsets (seeds) per fraction.")
_K = flags.DEFINE_list("k", [str(k) for k in evaluation.DEFAULT_KS],
                       "knn: comma-separated neighbour counts; the first is the headline.")
_RANDOM_INIT = flags.DEFINE_bool("random_init", False,
                                 "Evaluate an untrained encoder of the same architecture.")
_WATCH = flags.DEFINE_bool("watch", False,
                           "Evaluate every new checkpoint as training writes it.")


def _numbers(name, values, kind):
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--{name} takes comma-separated {kind.__name__}s; got "
                             f"{','.join(values)!r}.") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WATCH.value and _STEP.value is not None:
        raise app.UsageError("--watch evaluates every step; it cannot be combined with --step.")
    logging.set_verbosity(logging.INFO)
    kwargs = dict(config=_CONFIG.value, random_init=_RANDOM_INIT.value,
                  ks=_numbers("k", _K.value, int),
                  label_fractions=_numbers("label_fraction", _LABEL_FRACTION.value, float),
                  num_seeds=_SEEDS.value)
    try:
        if _WATCH.value:
            summaries = evaluation.watch(_WORKDIR.value, _PROTOCOL.value, _ENCODER.value,
                                         **kwargs)
        else:
            summaries = [evaluation.evaluate(_WORKDIR.value, _PROTOCOL.value, _ENCODER.value,
                                             step=_STEP.value, **kwargs)]
    except (FileNotFoundError, ValueError, checkpointing.CheckpointReadError) as error:
        sys.exit(f"evaluate: {error}")
    for summary in summaries:
        print(evaluation.format_summary(summary))


if __name__ == "__main__":
    app.run(main)
