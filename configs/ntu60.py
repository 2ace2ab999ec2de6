r"""ISC pretraining on NTU RGB+D 60, with the original's hyper-parameters.

  python -m skel_jax.main --config=configs/ntu60.py:xsub --workdir=DIR
  python -m skel_jax.main --config=configs/ntu60.py:xview,representations=graph-image --workdir=DIR

Arguments: the benchmark (``xsub`` or ``xview``), ``representations=`` (a pair such as seq-graph,
or one representation for intra-skeleton training) and ``runlocal`` for a tiny CPU smoke run.
"""

from skel_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, positional=("benchmark",), benchmark="xsub",
                                representations="seq-graph", runlocal=False)
    if args["benchmark"] not in ("xsub", "xview"):
        raise ValueError(f"NTU-60 benchmarks are xsub and xview; got {args['benchmark']!r}.")
    c = config_lib.base_config()
    c.data.dataset = f"ntu_rgbd/ntu60_{args['benchmark']}"
    c.representations = args["representations"]
    c.num_epochs = 451
    c.optimizer.decay_epochs = (351,)
    if args["runlocal"]:
        config_lib.apply_runlocal(c)
    return c
