"""Tests for the NTU skeleton graph (skel_jax.models.graph)."""

import numpy as np

from skel_jax.models import graph


def test_edges_are_the_24_ntu_bones_in_both_directions():
    inward = graph.inward_edges()
    assert len(inward) == 24
    assert inward[0] == (0, 1)  # spine base -> spine mid
    assert inward[-1] == (24, 11)  # right thumb -> right hand
    assert graph.outward_edges() == tuple((j, i) for i, j in inward)
    # Every joint but the centre (spine shoulder, 0-based 20) has exactly one parent.
    children = sorted(i for i, _ in inward)
    assert children == [j for j in range(25) if j != 20]


def test_edges_to_matrix_puts_edge_i_j_at_row_j_column_i():
    a = graph.edges_to_matrix([(0, 1), (2, 1)], 3)
    np.testing.assert_array_equal(a, [[0, 0, 0], [1, 0, 1], [0, 0, 0]])


def test_normalize_columns_divides_by_column_sums_and_keeps_empty_columns_zero():
    a = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])
    np.testing.assert_allclose(graph.normalize_columns(a), [[0.25, 0.0, 0.5], [0.75, 0.0, 0.5]])


def test_spatial_adjacency_shape_dtype_and_identity_subset():
    a = graph.spatial_adjacency()
    assert a.shape == (3, 25, 25)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a[0], np.eye(25))


def test_spatial_adjacency_inward_subset_hand_worked():
    inward = graph.spatial_adjacency()[1]
    # One parent per child, so every non-centre column holds a single 1 at the parent's row.
    assert inward[1, 0] == 1.0  # joint 1 -> 2 (1-based)
    assert inward[20, 1] == 1.0  # joint 2 -> 21
    assert inward[2, 3] == 1.0  # joint 4 -> 3
    assert inward[7, 22] == 1.0  # joint 23 -> 8
    assert inward[24, 23] == 1.0  # joint 24 -> 25
    assert inward.sum() == 24.0
    np.testing.assert_array_equal(inward[:, 20], np.zeros(25))
    col_sums = inward.sum(axis=0)
    np.testing.assert_array_equal(np.delete(col_sums, 20), np.ones(24))


def test_spatial_adjacency_outward_subset_hand_worked():
    outward = graph.spatial_adjacency()[2]
    # Joint 21 (0-based 20) has four children: 2, 3, 5, 9 (1-based).
    for child in (1, 2, 4, 8):
        assert outward[child, 20] == 0.25
    # Joint 1 has two children, 13 and 17.
    assert outward[12, 0] == 0.5 and outward[16, 0] == 0.5
    assert outward[0, 1] == 1.0  # joint 2's only child is 1
    assert outward[22, 7] == 1.0  # joint 8's only child is 23 (thumb), whose child is 22
    assert outward[21, 22] == 1.0
    # Leaves (head, feet, hand tips) have no children: empty columns.
    for leaf in (3, 15, 19, 21, 23):
        np.testing.assert_array_equal(outward[:, leaf], np.zeros(25))
    # The two directed subsets together form the undirected bone pattern.
    inward = graph.spatial_adjacency()[1]
    np.testing.assert_array_equal(outward > 0, (inward > 0).T)
