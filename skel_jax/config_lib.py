"""Shared pieces of the experiment configs in ``configs/``: argument parsing, defaults, checks.

A config file exposes ``get_config(arg)``; ``arg`` is what follows the colon in
``--config=configs/ntu60.py:xsub,runlocal``: comma-separated words (flags) or ``key=value``.
"""

import ml_collections

PAIRS = ("seq-graph", "graph-image", "seq-image")
SINGLES = ("seq", "graph", "image")
SCHEDULES = ("step", "cosine")
COMPUTE_DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A config that cannot run; the message names the setting to change.

    The command-line programs print it without a traceback.
    """


def parse_arg(arg: str | None, *, positional: tuple[str, ...] = (), **defaults) -> dict:
    """Parses a config argument such as ``"xsub,runlocal"`` or ``"xsub,batch=32"``.

    Args:
      arg: the text after the colon, or None.
      positional: names given, in order, to the leading words that are not ``key=value``,
        not a flag already in ``defaults`` with a bool value.
      **defaults: every accepted key with its default; the type of a default converts the value.

    Returns:
      The settings.

    Raises:
      ValueError: an unknown key, too many positional words, or a value of the wrong type.
    """
    settings = dict(defaults)
    remaining = list(positional)
    for word in filter(None, (w.strip() for w in (arg or "").split(","))):
        if "=" in word:
            key, value = word.split("=", 1)
        elif isinstance(defaults.get(word), bool):
            key, value = word, "true"
        elif remaining:
            key, value = remaining.pop(0), word
        else:
            raise ValueError(f"Unexpected config argument {word!r}; accepted keys: {sorted(defaults)}")
        if key not in defaults:
            raise ValueError(f"Unknown config argument {key!r}; accepted keys: {sorted(defaults)}")
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"Config argument {key}={value!r} is not a boolean.")
            settings[key] = value.lower() in ("true", "1")
        elif default is None or isinstance(default, str):
            settings[key] = value
        else:
            try:
                settings[key] = type(default)(value)
            except ValueError:
                raise ValueError(
                    f"Config argument {key}={value!r} is not a {type(default).__name__}.") from None
    return settings


def base_config() -> ml_collections.ConfigDict:
    """The defaults shared by every ISC pretraining config: the original's hyper-parameters."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "ntu_rgbd/ntu60_xsub"  # TFDS name/config.
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS default if None.
    c.data.train_split = "train"
    c.data.max_frames = 300  # Stored frames are padded/truncated to this.
    c.data.clip_frames = 64  # Model input length after the temporal crop-resize.
    c.data.read_threads = 2
    # When set, the synthetic NTU-format dataset is generated and built into data_dir first.
    c.data.synthetic_clips = 0

    c.representations = "seq-graph"  # An inter-skeleton pair, or one name for intra-skeleton.
    c.intra_weight = 0.0  # Weight of the intra-skeleton terms added to the inter-skeleton loss.

    c.model = ml_collections.ConfigDict()
    c.model.compute_dtype = "float32"  # bfloat16 on accelerators.
    c.model.seq = ml_collections.ConfigDict(dict(hidden_size=1024, num_layers=3,
                                                 mode="frame_by_frame"))
    c.model.graph = ml_collections.ConfigDict(dict(
        channels=(64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
        strides=(1, 1, 1, 1, 2, 1, 1, 2, 1, 1)))
    c.model.image = ml_collections.ConfigDict(dict(out_channels=64))

    c.contrastive = ml_collections.ConfigDict()
    c.contrastive.queue_size = 16384
    c.contrastive.momentum = 0.999
    c.contrastive.temperature = 0.07

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4  # Added to the gradient, as PyTorch's SGD does.
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (351,)
    c.optimizer.decay_factor = 0.1

    c.global_batch_size = 64
    c.num_epochs = 451
    c.total_steps = 0  # If > 0, overrides num_epochs.
    c.checkpoint_every_epochs = 10
    c.checkpoint_every_steps = 0  # If > 0, overrides checkpoint_every_epochs.
    c.keep_checkpoints = 5
    c.log_every_steps = 50
    return c


def apply_runlocal(c: ml_collections.ConfigDict) -> None:
    """Shrinks models, batch and steps so that a config smoke-runs on a laptop CPU in a minute."""
    c.model.seq.hidden_size = 32
    c.model.seq.num_layers = 2
    c.model.graph.channels = (16, 16, 32, 32)
    c.model.graph.strides = (1, 1, 2, 1)
    c.model.image.out_channels = 16
    c.contrastive.queue_size = 64
    c.global_batch_size = 8
    c.total_steps = 6
    c.checkpoint_every_steps = 3
    c.log_every_steps = 1


def representation_names(representations: str) -> tuple[str, ...]:
    """``"seq-graph"`` -> ``("seq", "graph")``; ``"graph"`` -> ``("graph",)``.

    Raises:
      ConfigError: for anything but the pairs and single representations ISC defines.
    """
    if representations in PAIRS:
        return tuple(representations.split("-"))
    if representations in SINGLES:
        return (representations,)
    raise ConfigError(
        f"Unknown representations {representations!r}: use an inter-skeleton pair {PAIRS} or a "
        f"single representation {SINGLES} for intra-skeleton training.")


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks combinations that would fail later, before any work starts.

    Raises:
      ConfigError: with a message naming the offending settings.
    """
    names = representation_names(c.representations)
    if c.global_batch_size <= 0:
        raise ConfigError(f"global_batch_size must be positive; got {c.global_batch_size}.")
    if c.contrastive.queue_size <= 0 or c.contrastive.queue_size % c.global_batch_size:
        raise ConfigError(
            f"contrastive.queue_size ({c.contrastive.queue_size}) must be a positive multiple of "
            f"global_batch_size ({c.global_batch_size}), so that whole batches enter the queue.")
    if "image" in names and c.data.clip_frames != 64:
        raise ConfigError(
            f"The image representation (HCN) needs data.clip_frames == 64; got "
            f"{c.data.clip_frames}.")
    if c.data.clip_frames > c.data.max_frames:
        raise ConfigError(f"data.clip_frames ({c.data.clip_frames}) exceeds data.max_frames "
                          f"({c.data.max_frames}).")
    if c.optimizer.schedule not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule must be one of {SCHEDULES}; got "
                          f"{c.optimizer.schedule!r}.")
    if c.model.compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"model.compute_dtype must be one of {COMPUTE_DTYPES}; got "
                          f"{c.model.compute_dtype!r}.")
    if c.intra_weight and len(names) == 1:
        raise ConfigError("intra_weight adds intra-skeleton terms to an inter-skeleton pair; with "
                          f"the single representation {c.representations!r} the loss is already "
                          "intra-skeleton.")
    if not 0.0 <= c.contrastive.momentum < 1.0:
        raise ConfigError(f"contrastive.momentum must be in [0, 1); got {c.contrastive.momentum}.")
    if c.contrastive.temperature <= 0:
        raise ConfigError(f"contrastive.temperature must be positive; got "
                          f"{c.contrastive.temperature}.")
    if c.total_steps <= 0 and c.num_epochs <= 0:
        raise ConfigError("Set num_epochs or total_steps to a positive number.")
