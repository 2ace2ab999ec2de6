r"""ISC pretraining on PKU-MMD (phase 1 or 2, cross-subject or cross-view).

  python -m skel_jax.main --config=configs/pku_mmd.py:phase1_xsub --workdir=DIR

The original released no PKU-MMD recipe; this uses its NTU-60 schedule.
Arguments: the split (``phase1_xsub``, ``phase1_xview``, ``phase2_xsub``, ``phase2_xview``),
``representations=`` and ``runlocal``.
"""

from skel_jax import config_lib

SPLITS = ("phase1_xsub", "phase1_xview", "phase2_xsub", "phase2_xview")


def get_config(arg=None):
    args = config_lib.parse_arg(arg, positional=("split",), split="phase1_xsub",
                                representations="seq-graph", runlocal=False)
    if args["split"] not in SPLITS:
        raise ValueError(f"PKU-MMD splits are {SPLITS}; got {args['split']!r}.")
    c = config_lib.base_config()
    c.data.dataset = f"pku_mmd/{args['split']}"
    c.representations = args["representations"]
    if args["runlocal"]:
        config_lib.apply_runlocal(c)
    return c
