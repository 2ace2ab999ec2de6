"""The end-to-end demo's evaluation settings and its results table."""

from skel_jax import demo
from skel_jax import evaluation


def test_the_shortened_linear_schedule_scales_its_decays():
    config = demo.demo_eval_config(40)
    assert config.linear.epochs == 40
    assert tuple(config.linear.decay_epochs) == (25, 35)  # 50 and 70 of 80, scaled.
    paper = evaluation.default_config()
    assert config.linear.learning_rate == paper.linear.learning_rate
    assert config.linear.batch_size == paper.linear.batch_size


def test_results_table():
    table = demo.format_table([
        dict(protocol="knn", encoder="seq", pretrained=0.4567, random_init=0.1),
        dict(protocol="linear", encoder="graph", pretrained=1.0, random_init=0.0523),
    ])
    assert table.splitlines() == [
        "protocol  encoder    pretrained  random init",
        "knn       seq             45.7%        10.0%",
        "linear    graph          100.0%         5.2%",
    ]
    assert len({len(line) for line in table.splitlines()}) == 1  # Right-aligned columns.


def test_shortfall_note_names_the_rows_behind_random_init():
    rows = [dict(protocol="knn", encoder="seq", pretrained=0.5, random_init=0.4),
            dict(protocol="knn", encoder="graph", pretrained=0.4, random_init=0.6),
            dict(protocol="linear", encoder="graph", pretrained=0.3, random_init=0.3)]
    note = demo.shortfall_note(rows)
    assert note.startswith("Pretrained does not beat random init for: knn graph, linear graph.")
    assert "README.md (Status)" in note
    assert demo.shortfall_note(rows[:1]) is None
