"""skel_jax: Skeleton-Contrastive 3D Action Representation Learning (ISC) in JAX/Flax."""

__version__ = "0.1.0"
