"""The original's optimizer: SGD with momentum and PyTorch-style (coupled) weight decay."""

import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int) -> optax.Schedule:
    """Step decay at ``optimizer.decay_epochs`` (x ``decay_factor``), or cosine to zero."""
    opt = config.optimizer
    if opt.schedule == "cosine":
        return optax.cosine_decay_schedule(opt.learning_rate, total_steps(config, steps_per_epoch))
    boundaries = {int(epoch * steps_per_epoch): opt.decay_factor for epoch in opt.decay_epochs}
    return optax.piecewise_constant_schedule(opt.learning_rate, boundaries)


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Training steps: ``total_steps`` if set, else ``num_epochs`` epochs."""
    return config.total_steps if config.total_steps > 0 else config.num_epochs * steps_per_epoch


def make_optimizer(config: ml_collections.ConfigDict,
                   steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """SGD as in PyTorch: d = g + wd * p; buf = momentum * buf + d; p -= lr * buf.

    Weight decay applies to every parameter (biases and BatchNorm scales included), as the
    original's ``torch.optim.SGD(model.parameters(), weight_decay=...)`` does.

    Returns:
      The optimizer and its learning-rate schedule (for logging).
    """
    schedule = learning_rate_schedule(config, steps_per_epoch)
    tx = optax.chain(
        optax.add_decayed_weights(config.optimizer.weight_decay),
        optax.sgd(schedule, momentum=config.optimizer.momentum),
    )
    return tx, schedule
