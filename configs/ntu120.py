r"""ISC pretraining on NTU RGB+D 120, with the original's hyper-parameters.

  python -m skel_jax.main --config=configs/ntu120.py:xsub --workdir=DIR

Arguments: the benchmark (``xsub`` or ``xset``), ``representations=`` and ``runlocal``.
"""

from skel_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, positional=("benchmark",), benchmark="xsub",
                                representations="seq-graph", runlocal=False)
    if args["benchmark"] not in ("xsub", "xset"):
        raise ValueError(f"NTU-120 benchmarks are xsub and xset; got {args['benchmark']!r}.")
    c = config_lib.base_config()
    c.data.dataset = f"ntu_rgbd/ntu120_{args['benchmark']}"
    c.representations = args["representations"]
    # The original decays at epochs 251 and 351 of 351, so the second decay never takes effect.
    c.num_epochs = 351
    c.optimizer.decay_epochs = (251, 351)
    if args["runlocal"]:
        config_lib.apply_runlocal(c)
    return c
