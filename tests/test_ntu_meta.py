"""Official NTU benchmark splits, sample names and missing lists (data.md §1.2, §1.6, §1.7)."""

import pytest

from skel_jax.data import ntu_meta
from skel_jax.data import pku_meta

# The test subjects as data.md lists them, computed there as the complement within 1-106.
NTU120_TEST_SUBJECTS = {
    3, 6, 7, 10, 11, 12, 20, 21, 22, 23, 24, 26, 29, 30, 32, 33, 36, 37, 39, 40, 41, 42, 43, 44,
    48, 51, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 71, 72, 73, 75, 76, 77, 79, 87, 88, 90, 96, 99,
    101, 102, 104, 105, 106}
NTU60_TEST_SUBJECTS = {3, 6, 7, 10, 11, 12, 20, 21, 22, 23, 24, 26, 29, 30, 32, 33, 36, 37, 39, 40}


def _sample(setup=1, camera=1, subject=1, replication=1, action=1):
    return ntu_meta.SampleId(setup, camera, subject, replication, action)


def test_subject_lists_have_the_official_sizes_and_no_duplicates():
    assert len(ntu_meta.NTU60_TRAIN_SUBJECTS) == len(set(ntu_meta.NTU60_TRAIN_SUBJECTS)) == 20
    assert len(ntu_meta.NTU120_TRAIN_SUBJECTS) == len(set(ntu_meta.NTU120_TRAIN_SUBJECTS)) == 53
    assert ntu_meta.NTU120_TRAIN_SUBJECTS[:20] == ntu_meta.NTU60_TRAIN_SUBJECTS


@pytest.mark.parametrize("benchmark,subjects,test_subjects", [
    ("xsub60", range(1, 41), NTU60_TEST_SUBJECTS),
    ("xsub120", range(1, 107), NTU120_TEST_SUBJECTS),
])
def test_cross_subject_test_split_is_the_complement(benchmark, subjects, test_subjects):
    test = {p for p in subjects if not ntu_meta.is_train(_sample(subject=p), benchmark)}
    assert test == test_subjects
    assert len(subjects) - len(test) == (20 if benchmark == "xsub60" else 53)


def test_cross_view_and_cross_setup():
    assert [ntu_meta.is_train(_sample(camera=c), "xview60") for c in (1, 2, 3)] == [
        False, True, True]
    train_setups = [s for s in range(1, 33) if ntu_meta.is_train(_sample(setup=s), "xset120")]
    assert train_setups == list(range(2, 33, 2))


def test_unknown_benchmark_is_rejected():
    with pytest.raises(ValueError, match="unknown NTU benchmark 'xsub99'.*xview60"):
        ntu_meta.is_train(_sample(), "xsub99")


def test_ntu60_keeps_only_its_setups_and_actions():
    assert ntu_meta.in_dataset(_sample(setup=17, action=60), "xsub60")
    assert not ntu_meta.in_dataset(_sample(setup=18, action=1), "xview60")
    assert not ntu_meta.in_dataset(_sample(setup=1, action=61), "xsub60")
    assert ntu_meta.in_dataset(_sample(setup=32, action=120), "xset120")


def test_parse_sample_name_round_trip_and_errors():
    sample = ntu_meta.parse_sample_name("S001C002P003R002A013.skeleton")
    assert sample == (1, 2, 3, 2, 13)
    assert sample.name == "S001C002P003R002A013"
    for bad in ("S001C002P003R002A13", "s001C002P003R002A013", "S001C002P003R002A013.txt", ""):
        with pytest.raises(ValueError, match="not an NTU RGB\\+D sample name"):
            ntu_meta.parse_sample_name(bad)


def test_missing_list_parser_skips_the_official_header():
    text = ("The following samples have missing skeletons.\n"
            "Please ignore them.\n\nS001C002P005R002A008\nS001C002P006R001A008\r\n"
            "S017C003P020R002A060.skeleton\n")
    assert ntu_meta.read_missing_list(text) == {
        "S001C002P005R002A008", "S001C002P006R001A008", "S017C003P020R002A060"}


def test_class_name_counts():
    assert len(ntu_meta.ACTION_NAMES) == 120
    assert ntu_meta.ACTION_NAMES[12] == "tear up paper"  # A13
    assert ntu_meta.ACTION_NAMES[119].startswith("finger-guessing")
    assert len(pku_meta.ACTION_NAMES) == 51 == len(set(pku_meta.ACTION_NAMES))
