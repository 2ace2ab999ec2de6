r"""ISC on the bundled synthetic NTU-format dataset, sized to train in minutes on a 2-core CPU.

  python -m skel_jax.main --config=configs/demo.py --workdir=/tmp/skel_jax_demo

The synthetic clips are generated and built as ``ntu_rgbd/ntu60_xsub`` into ``WORKDIR/data`` on
the first run. The encoders are narrower than the paper's and the clips 32 frames long, so that
a laptop trains them quickly; the method is the same, with the schedule changes noted below. Arguments: ``representations=`` and ``runlocal``.
"""

from skel_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, representations="seq-graph", runlocal=False)
    c = config_lib.base_config()
    c.data.dataset = "ntu_rgbd/ntu60_xsub"
    c.data.synthetic_clips = 1200
    c.data.max_frames = 300
    c.representations = args["representations"]
    c.model.seq.hidden_size = 128
    c.model.seq.num_layers = 2
    c.model.graph.channels = (16, 16, 32, 32, 64)
    c.model.graph.strides = (1, 1, 2, 1, 2)
    c.model.image.out_channels = 32
    # 32-frame clips halve the cost; the image representation (HCN) needs 64.
    c.data.clip_frames = 64 if "image" in args["representations"] else 32
    # Far fewer negatives than training clips, so the queue is not mostly the same clips again.
    c.contrastive.queue_size = 256
    # A few hundred steps instead of the paper's 451 epochs: the key encoders follow faster, and
    # the intra-skeleton terms give each encoder a signal of its own while the two learn to
    # agree (with the cross terms alone, two random encoders take far longer to align).
    c.contrastive.momentum = 0.99
    c.intra_weight = 1.0 if "-" in args["representations"] else 0.0
    c.global_batch_size = 32
    c.optimizer.learning_rate = 0.05
    c.optimizer.schedule = "cosine"
    c.num_epochs = 20
    c.checkpoint_every_epochs = 5
    c.log_every_steps = 20
    if args["runlocal"]:
        config_lib.apply_runlocal(c)
        c.data.synthetic_clips = 60
    return c
