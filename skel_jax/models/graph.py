"""The NTU RGB+D 25-joint skeleton graph with 2s-AGCN's spatial labelling.

Joint indices follow the Kinect v2 JointType order (data.md §1.5). The adjacency is built exactly
as 2s-AGCN's ``graph/tools.py`` (``edge2mat``, ``normalize_digraph``, ``get_spatial_graph``) so that
weights imported from the original checkpoints see the same graph.
"""

import numpy as np

NUM_JOINTS = 25

# 1-based (child, parent) pairs pointing towards the spine-shoulder centre (joint 21).
INWARD_EDGES_1BASED = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
    (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15),
    (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
)


def inward_edges() -> tuple[tuple[int, int], ...]:
    """Returns the 0-based (child, parent) edges of the NTU graph."""
    return tuple((i - 1, j - 1) for i, j in INWARD_EDGES_1BASED)


def outward_edges() -> tuple[tuple[int, int], ...]:
    """Returns the 0-based (parent, child) edges of the NTU graph."""
    return tuple((j, i) for i, j in inward_edges())


def edges_to_matrix(edges, num_nodes: int) -> np.ndarray:
    """Builds a dense directed adjacency matrix (2s-AGCN's ``edge2mat``).

    Args:
      edges: iterable of 0-based (i, j) pairs.
      num_nodes: number of graph nodes.

    Returns:
      float64 array ``a`` of shape (num_nodes, num_nodes) with ``a[j, i] = 1`` for every (i, j).
    """
    a = np.zeros((num_nodes, num_nodes))
    for i, j in edges:
        a[j, i] = 1.0
    return a


def normalize_columns(a: np.ndarray) -> np.ndarray:
    """Divides each column by its sum (2s-AGCN's ``normalize_digraph``: ``A @ diag(1/colsum)``).

    Args:
      a: square matrix.

    Returns:
      The normalised matrix; columns summing to zero stay zero.
    """
    col_sum = a.sum(axis=0)
    inv = np.divide(1.0, col_sum, out=np.zeros_like(col_sum, dtype=np.float64), where=col_sum > 0)
    return a * inv[None, :]


def spatial_adjacency() -> np.ndarray:
    """Returns the three-subset spatial adjacency of 2s-AGCN (``get_spatial_graph``).

    Returns:
      float32 array of shape (3, 25, 25): [identity (self links, not normalised),
      column-normalised inward edges, column-normalised outward edges].
    """
    identity = edges_to_matrix(((i, i) for i in range(NUM_JOINTS)), NUM_JOINTS)
    inward = normalize_columns(edges_to_matrix(inward_edges(), NUM_JOINTS))
    outward = normalize_columns(edges_to_matrix(outward_edges(), NUM_JOINTS))
    return np.stack((identity, inward, outward)).astype(np.float32)
