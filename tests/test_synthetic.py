"""Tests of the synthetic NTU RGB+D / PKU-MMD generator and its body model."""

import collections
import re

import numpy as np
import pytest

from skel_jax.data import kinematics as kin
from skel_jax.data import ntu_meta
from skel_jax.data import ntu_skeleton
from skel_jax.data import pku_meta
from skel_jax.data import synthetic
from skel_jax.models import graph

SEED = 7
_BONES = [(joint, parent) for joint, parent in enumerate(kin.PARENTS) if parent >= 0]


@pytest.fixture(scope="module")
def ntu_files():
    return list(synthetic.iter_ntu_files(300, SEED))


@pytest.fixture(scope="module")
def ntu_parsed(ntu_files):
    return [ntu_skeleton.parse_skeleton(f.data, f.path) for f in ntu_files]


def _actor(raw) -> np.ndarray:
    """Slot 0 (the first listed body, the actor here) in the frames where it is present."""
    xyz = raw.bodies[0].astype(np.float64)
    return xyz[np.abs(xyz).sum(axis=(1, 2)) > 0]


def _bone_lengths(xyz: np.ndarray) -> np.ndarray:
    joints, parents = zip(*_BONES)
    return np.linalg.norm(xyz[..., joints, :] - xyz[..., parents, :], axis=-1)


# ----------------------------------------------------------------------------------------------
# A strict checker of the .skeleton grammar (data.md §1.3), independent of the project's reader.

_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:e[+-]\d+)?"
_JOINT_LINE = re.compile(rf"^(?:{_NUMBER} ){{11}}[012]$")
_INFO_LINE = re.compile(rf"^(\d+) (\d+) ([01]) ([0-4]) ([01]) ([0-4]) ([01]) {_NUMBER} "
                        rf"{_NUMBER} [012]$")


def _check_grammar(data: bytes) -> list[int]:
    """Asserts that data is a well-formed .skeleton file; returns the per-frame body counts."""
    text = data.decode("ascii")
    if "\r" in text:
        assert "\n" not in text.replace("\r\n", ""), "mixed line endings"
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    assert lines.pop() == "", "the file must end with a line ending"
    assert re.fullmatch(r"\d+", lines[0])
    index, counts = 1, []
    for _ in range(int(lines[0])):
        assert re.fullmatch(r"\d+", lines[index]), lines[index]
        counts.append(int(lines[index]))
        index += 1
        for _ in range(counts[-1]):
            info = _INFO_LINE.match(lines[index])
            assert info, lines[index]
            assert int(info.group(1)) < 2**64 and int(info.group(2)) < 16
            assert lines[index + 1] == "25"
            for line in lines[index + 2:index + 27]:
                assert _JOINT_LINE.match(line), line
            index += 27
    assert index == len(lines), "trailing lines after the last frame"
    return counts


# ----------------------------------------------------------------------------------------------
# Body model


def test_kinematic_tree_is_the_agcn_graph():
    bones = {frozenset(bone) for bone in _BONES}
    assert bones == {frozenset(edge) for edge in graph.inward_edges()}
    assert kin.PARENTS[kin.HAND_TIP_L] == kin.THUMB_L and kin.PARENTS[kin.THUMB_L] == kin.HAND_L
    assert sorted(kin.FK_ORDER) == list(range(kin.NUM_JOINTS))
    position = {joint: i for i, joint in enumerate(kin.FK_ORDER)}
    assert all(position[parent] < position[joint] for joint, parent in _BONES)


def test_rest_body_is_symmetric_and_adult_sized():
    offsets = kin.REST_OFFSETS
    np.testing.assert_allclose(offsets[list(kin.MIRROR)] * (-1, 1, 1), offsets)
    identity = np.broadcast_to(np.eye(3), (1, kin.NUM_JOINTS, 3, 3))
    positions, _ = kin.forward_kinematics(offsets, identity, np.eye(3)[None], np.zeros((1, 3)))
    height = positions[0, kin.HEAD, 1] - positions[0, list(kin.FEET), 1].min()
    assert height > 1.5 and height < 1.75  # Head joint (centre of the head) above the foot joints.
    assert positions[0, kin.HAND_TIP_R, 1] < positions[0, kin.HAND_R, 1]
    assert positions[0, kin.SHOULDER_R, 0] > 0 > positions[0, kin.SHOULDER_L, 0]


def test_forward_kinematics_keeps_bone_lengths():
    rng = np.random.default_rng(0)
    offsets = kin.body_offsets(1.1, {"arms": 0.95})
    local = kin.euler_to_matrix(rng.uniform(-2, 2, (5, kin.NUM_JOINTS, 3)))
    root = kin.euler_to_matrix(rng.uniform(-2, 2, (5, 3)))
    positions, rotations = kin.forward_kinematics(offsets, local, root, rng.normal(size=(5, 3)))
    expected = np.linalg.norm(offsets[[joint for joint, _ in _BONES]], axis=1)
    np.testing.assert_allclose(_bone_lengths(positions), np.broadcast_to(expected, (5, 24)))
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, -1, -2),
                               np.broadcast_to(np.eye(3), rotations.shape), atol=1e-12)


def test_euler_angles_follow_the_documented_conventions():
    hanging = np.array([0.0, -1.0, 0.0])
    forwards = kin.euler_to_matrix(np.array([np.pi / 2, 0.0, 0.0])) @ hanging
    outwards = kin.euler_to_matrix(np.array([0.0, 0.0, np.pi / 2])) @ hanging
    np.testing.assert_allclose(forwards, [0, 0, -1], atol=1e-12)  # The body faces -z.
    np.testing.assert_allclose(outwards, [1, 0, 0], atol=1e-12)  # +x is the subject's right.


def _rotate_by_quaternion(q, v):
    w, xyz = q[..., :1], q[..., 1:]
    t = 2 * np.cross(xyz, v)
    return v + w * t + np.cross(xyz, t)


def test_matrix_to_quaternion():
    rng = np.random.default_rng(1)
    matrices = np.concatenate([
        kin.euler_to_matrix(rng.uniform(-np.pi, np.pi, (200, 3))),
        kin.rotation_x(np.array([np.pi])), kin.rotation_y(np.array([np.pi])),
        kin.rotation_z(np.array([np.pi])), np.eye(3)[None]])
    quaternions = kin.matrix_to_quaternion(matrices)
    np.testing.assert_allclose(np.linalg.norm(quaternions, axis=1), 1.0)
    assert np.all(quaternions[:, 0] >= 0)
    vectors = rng.normal(size=(len(matrices), 3))
    np.testing.assert_allclose(_rotate_by_quaternion(quaternions, vectors),
                               np.einsum("nij,nj->ni", matrices, vectors), atol=1e-9)
    np.testing.assert_allclose(quaternions[-1], [1, 0, 0, 0])


def test_body_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown body segments \['tail'\]"):
        kin.body_offsets(1.0, {"tail": 1.2})
    with pytest.raises(ValueError, match="must be positive"):
        kin.body_offsets(1.0, {"legs": -1.0})
    with pytest.raises(ValueError, match=r"local_rotations must have shape \(2, 25, 3, 3\)"):
        kin.forward_kinematics(kin.REST_OFFSETS, np.zeros((2, 24, 3, 3)), np.zeros((2, 3, 3)),
                               np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"root_position must have shape \(2, 3\)"):
        kin.forward_kinematics(kin.REST_OFFSETS, np.zeros((2, 25, 3, 3)), np.zeros((2, 3, 3)),
                               np.zeros((3, 3)))


# ----------------------------------------------------------------------------------------------
# Clean clips: geometry and physics


@pytest.fixture(scope="module")
def clean_clips():
    """One noise-free clip per action, from a camera at C002's position, with its camera."""
    subject = synthetic.make_subject(SEED, 3)
    camera = synthetic.make_camera(-45.0, height=1.3, distance=2.8, aim_height=0.8)
    clips = []
    for action in range(synthetic.NUM_ACTIONS):
        rng = np.random.default_rng([SEED, action])
        frames = synthetic.synthesize_clip(rng, action, subject, camera, facing_deg=-30.0,
                                           nuisance=synthetic.NO_NUISANCE)
        clips.append(np.array([[body.xyz for body in bodies] for bodies in frames]))
    return camera, clips


def test_clean_clips_are_rigid_and_grounded(clean_clips):
    camera, clips = clean_clips
    for action, clip in enumerate(clips):
        expected_bodies = 2 if action in synthetic.MUTUAL_ACTIONS else 1
        assert clip.shape[1:] == (expected_bodies, kin.NUM_JOINTS, 3), action
        assert synthetic.MIN_CLIP_FRAMES <= len(clip) <= synthetic.MAX_CLIP_FRAMES
        lengths = _bone_lengths(clip)
        np.testing.assert_allclose(lengths, np.broadcast_to(lengths[:1], lengths.shape),
                                   atol=1e-9, err_msg=synthetic.ACTION_NAMES[action])
        world = clip @ camera.rotation.T + camera.position  # Undo the camera's pose and tilt.
        lowest_foot = world[..., list(kin.FEET), 1].min(axis=-1)
        assert lowest_foot.min() == pytest.approx(kin.FOOT_HEIGHT_M, abs=1e-9)
        assert lowest_foot.max() < 0.45  # Only jumps and hops leave the floor, not far.
        assert np.all(world[..., kin.HEAD, 1] > world[..., list(kin.FEET), 1].max(-1) + 0.5)


def test_action_poses_do_what_the_names_say(clean_clips):
    camera, clips = clean_clips
    names = synthetic.ACTION_NAMES

    def world(name):
        return clips[names.index(name)] @ camera.rotation.T + camera.position

    def distance(xyz, a, b):
        return np.linalg.norm(xyz[:, 0, a] - xyz[:, 0, b], axis=-1)

    drink, touch = world("drink water"), world("touch head (headache)")
    assert distance(drink, kin.HAND_R, kin.HEAD).min() < 0.25
    assert distance(touch, kin.HAND_R, kin.HEAD).min() < 0.2
    assert distance(world("clapping"), kin.HAND_R, kin.HAND_L).min() < 0.15
    cheer = world("cheer up")
    assert np.all((cheer[:, 0, [kin.HAND_L, kin.HAND_R], 1] > cheer[:, 0, [kin.HEAD], 1]).any(0))
    sit, stand = world("sitting down"), world("standing up (from sitting position)")
    assert sit[-1, 0, kin.SPINE_BASE, 1] < sit[0, 0, kin.SPINE_BASE, 1] - 0.2
    assert stand[0, 0, kin.SPINE_BASE, 1] < stand[-1, 0, kin.SPINE_BASE, 1] - 0.2
    assert world("jump up")[:, 0, list(kin.FEET), 1].min(-1).max() > 0.1
    assert world("kicking something")[:, 0, kin.FOOT_R, 1].max() > 0.4
    assert world("pickup")[:, 0, kin.HAND_R, 1].min() < 0.5
    shake = world("handshaking")
    assert np.linalg.norm(shake[:, 0, kin.HAND_R] - shake[:, 1, kin.HAND_R], axis=-1).min() < 0.25
    salute = world("salute")  # The hand comes up beside the head and the elbow out to the side.
    assert distance(salute, kin.HAND_R, kin.HEAD).min() < 0.25
    elbow_out = np.abs(salute[:, 0, kin.ELBOW_R, 0] - salute[:, 0, kin.SPINE_SHOULDER, 0])
    assert elbow_out.max() > 0.3
    point = world("pointing to something with finger")  # The arm is raised, nearly straight.
    hand_height = point[:, 0, kin.HAND_R, 1] - point[:, 0, kin.SHOULDER_R, 1]
    highest = hand_height.argmax()
    assert hand_height[highest] > hand_height[0] + 0.35
    assert distance(point, kin.HAND_R, kin.SHOULDER_R)[highest] > 0.45


def test_actions_are_written_under_the_classes_that_name_them():
    assert len(synthetic.NTU_LABELS) == len(set(synthetic.NTU_LABELS)) == synthetic.NUM_ACTIONS
    assert len(synthetic.PKU_LABELS) == len(set(synthetic.PKU_LABELS)) == synthetic.NUM_ACTIONS
    for name, ntu, pku in zip(synthetic.ACTION_NAMES, synthetic.NTU_LABELS,
                              synthetic.PKU_LABELS):
        assert ntu in range(1, ntu_meta.NTU60_NUM_CLASSES + 1)  # NTU-60 builds hold them all.
        assert ntu_meta.ACTION_NAMES[ntu - 1] == name
        # PKU-MMD names two of them more briefly.
        short = {"nod head/bow": "bow", "standing up (from sitting position)": "standing up"}
        assert pku_meta.ACTION_NAMES[pku - 1] == short.get(name, name)


def test_camera_space_matches_kinect(ntu_parsed):
    for raw in ntu_parsed:
        actor = _actor(raw)
        assert np.all(actor[:, kin.HEAD, 1] > actor[:, list(kin.FEET), 1].max(-1))
        assert -1.1 < np.median(actor[:, list(kin.FEET), 1]) < -0.3
        assert 2.0 < np.median(actor[:, kin.SPINE_BASE, 2]) < 4.0


def test_recorded_bones_are_constant_up_to_noise(ntu_parsed):
    for raw in ntu_parsed:
        lengths = _bone_lengths(_actor(raw))
        spread = np.median(np.abs(lengths - np.median(lengths, axis=0)), axis=0)
        assert spread.max() < 0.015


def test_performers_keep_their_body_across_clips(ntu_files, ntu_parsed):
    by_performer = collections.defaultdict(list)
    for generated, raw in zip(ntu_files, ntu_parsed):
        performer = ntu_meta.parse_sample_name(generated.path).subject
        by_performer[performer].append(np.median(_bone_lengths(_actor(raw)), axis=0))
    same = [np.abs(a - b).max() for clips in by_performer.values() for a in clips for b in clips]
    firsts = [clips[0] for clips in by_performer.values()]
    different = [np.abs(a - b).max() for i, a in enumerate(firsts) for b in firsts[i + 1:]]
    assert max(same) < 0.01
    assert np.median(different) > 0.02
    subject = synthetic.make_subject(SEED, 5)
    np.testing.assert_array_equal(subject.offsets, synthetic.make_subject(SEED, 5).offsets)
    assert not np.array_equal(subject.offsets, synthetic.make_subject(SEED + 1, 5).offsets)


def test_three_cameras_see_the_same_performance(ntu_files, ntu_parsed):
    for start in range(0, 30, 3):
        worlds, present = [], []
        for generated, raw in zip(ntu_files[start:start + 3], ntu_parsed[start:start + 3]):
            sample = ntu_meta.parse_sample_name(generated.path)
            camera = synthetic.ntu_camera(SEED, sample.setup, sample.camera)
            xyz = raw.bodies[0].astype(np.float64)
            worlds.append(xyz @ camera.rotation.T + camera.position)
            present.append(np.abs(xyz).sum(axis=(1, 2)) > 0)
        both = present[0] & present[1] & present[2]
        for other in worlds[1:]:
            assert np.median(np.linalg.norm(worlds[0][both] - other[both], axis=-1)) < 0.03


# ----------------------------------------------------------------------------------------------
# Files, names and variation


def test_same_seed_same_bytes():
    first = [(f.path, f.data) for f in synthetic.iter_ntu_files(4, 11)]
    again = [(f.path, f.data) for f in synthetic.iter_ntu_files(4, 11)]
    other = [(f.path, f.data) for f in synthetic.iter_ntu_files(4, 12)]
    assert first == again
    assert [p for p, _ in first] == [p for p, _ in other]
    assert all(a != b for (_, a), (_, b) in zip(first, other))


def test_names_are_unique_balanced_and_cover_both_benchmarks(ntu_files):
    for num_classes in (synthetic.NUM_ACTIONS, 4):
        ids = synthetic.ntu_sample_ids(synthetic.max_ntu_clips(num_classes), num_classes)
        assert len({sample.name for sample in ids}) == len(ids)
        assert {sample.action for sample in ids} == set(synthetic.NTU_LABELS[:num_classes])
    ids = [ntu_meta.parse_sample_name(f.path) for f in ntu_files]
    assert ids == synthetic.ntu_sample_ids(300)
    assert all(1 <= s.setup <= 17 and 1 <= s.camera <= 3 and 1 <= s.subject <= 40
               and 1 <= s.replication <= 2 for s in ids)
    counts = collections.Counter(s.action for s in ids)
    assert len(counts) == synthetic.NUM_ACTIONS and max(counts.values()) - min(counts.values()) <= 3
    first_six = synthetic.ntu_sample_ids(6)
    for benchmark in ("xsub60", "xview60"):
        assert {ntu_meta.is_train(s, benchmark) for s in first_six} == {True, False}


def test_files_follow_the_grammar(ntu_files):
    special = [f for f in ntu_files if f.crlf or f.leading_empty or f.max_bodies > 2]
    for generated in ntu_files[:10] + special[:30]:
        counts = _check_grammar(generated.data)
        assert len(counts) == generated.num_frames
        assert max(counts) == generated.max_bodies
        assert counts.index(next(c for c in counts if c)) == generated.leading_empty
        assert (b"\r\n" in generated.data) == generated.crlf


def test_clip_round_trips_through_the_reader():
    subject = synthetic.make_subject(SEED, 9)
    camera = synthetic.ntu_camera(SEED, 4, 2)
    nuisance = synthetic.Nuisance(leading_empty_prob=1.0, spurious_prob=1.0)
    frames = synthetic.synthesize_clip(np.random.default_rng(3), 16, subject, camera,
                                       nuisance=nuisance)
    text = synthetic.writer.format_ntu_skeleton(frames, line_ending="\r\n")
    raw = ntu_skeleton.parse_skeleton(text.encode("ascii"), "clip.skeleton")
    np.testing.assert_array_equal(raw.body_counts, [len(bodies) for bodies in frames])
    assert raw.body_counts[0] == 0 and raw.body_counts.max() >= 3
    for f, bodies in enumerate(frames):
        for slot, body in enumerate(bodies[:4]):
            np.testing.assert_allclose(raw.bodies[slot, f], body.xyz, atol=1e-6)
    tracks = collections.defaultdict(list)
    for bodies in frames:
        for body in bodies:
            tracks[body.body_id].append(body.xyz)
    ids = sorted(tracks)  # Kinect ids grow: actor, partner, then the spurious bodies.
    assert len(ids) >= 4
    assert len(tracks[ids[0]]) == len(tracks[ids[1]]) == sum(1 for bodies in frames if bodies)
    for body_id in ids[2:]:  # Short-lived, small, nearly still blobs.
        blob = np.array(tracks[body_id])
        assert len(blob) < len(frames) and np.ptp(blob, axis=1).max() < 0.8
        assert np.ptp(blob.mean(axis=1), axis=0).max() < 0.05


def test_variation_spread_in_200_clips(ntu_files):
    files = ntu_files[:200]
    assert sum(f.leading_empty > 0 for f in files) >= 10
    assert max(f.leading_empty for f in files) <= 10
    assert sum(f.max_bodies > 2 for f in files) >= 2
    assert sum(f.max_bodies == 2 for f in files) >= 10  # Partners and bystanders.
    assert 5 <= sum(f.crlf for f in files) <= 40
    lengths = np.array([f.num_frames for f in files])
    assert lengths.min() >= synthetic.MIN_CLIP_FRAMES and lengths.max() <= 300
    assert 60 <= np.median(lengths) <= 150 and lengths.max() > 150
    assert sum(b"\n1\n" not in f.data for f in files) > 0  # Not every clip has one body only.
    assert all(re.search(rb"(?m)^720575940379\d{5} ", f.data) for f in files)
    inferred = [re.search(rb" 1\r?\n", f.data) is not None for f in files]
    assert 0 < sum(inferred)


def test_actions_are_learnable_across_subjects(ntu_files, ntu_parsed):
    """1-NN on per-joint motion energy and vertical range beats chance by far (xsub split)."""
    features, labels, train = [], [], []
    for generated, raw in zip(ntu_files, ntu_parsed):
        actor = _actor(raw)
        centred = actor - actor[:, kin.SPINE_MID:kin.SPINE_MID + 1]
        energy = np.linalg.norm(np.diff(centred, axis=0), axis=-1).mean(axis=0)
        height = np.ptp(actor[..., 1], axis=0)
        features.append(np.concatenate([energy / energy.sum(), height / height.sum()]))
        sample = ntu_meta.parse_sample_name(generated.path)
        labels.append(sample.action)
        train.append(ntu_meta.is_train(sample, "xsub60"))
    features, labels, train = np.array(features), np.array(labels), np.array(train)
    distances = ((features[~train, None] - features[None, train]) ** 2).sum(-1)
    accuracy = np.mean(labels[train][distances.argmin(axis=1)] == labels[~train])
    assert accuracy > 8 / synthetic.NUM_ACTIONS  # Chance is 1/17.


def test_write_ntu_dataset_and_cli(tmp_path, capsys):
    paths = synthetic.write_ntu_dataset(tmp_path / "api", 4, 3, num_classes=2)
    assert [p.read_bytes() for p in paths] == [f.data for f in synthetic.iter_ntu_files(
        4, 3, num_classes=2)]
    assert synthetic.main(["--out", str(tmp_path / "cli"), "--clips", "4", "--seed", "3",
                           "--num_classes", "2", "--crlf_fraction", "0.1"]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in paths)
    assert [(tmp_path / "cli" / p.name).read_bytes() for p in paths] == [
        p.read_bytes() for p in paths]
    out = capsys.readouterr().out
    assert "Wrote 4 files" in out and "CRLF" in out


@pytest.mark.parametrize("call, message", [
    (lambda: synthetic.iter_ntu_files(0, 1), r"num_clips must be in 1\.\.69360"),
    (lambda: synthetic.iter_ntu_files(69361, 1), r"num_clips must be in 1\.\.69360"),
    (lambda: synthetic.ntu_sample_ids(4081, 1), r"num_clips must be in 1\.\.4080 for 1 classes"),
    (lambda: synthetic.iter_ntu_files(3, -1), "seed must be a non-negative integer"),
    (lambda: synthetic.iter_ntu_files(3, 1, num_classes=0), r"num_classes must be in 1\.\.17"),
    (lambda: synthetic.iter_ntu_files(3, 1, num_classes=18), r"num_classes must be in 1\.\.17"),
    (lambda: synthetic.iter_ntu_files(3, 1, crlf_fraction=1.5), r"crlf_fraction must be in"),
    (lambda: synthetic.iter_pku_files(3, 1, phase=3), "phase must be 1 or 2"),
    (lambda: synthetic.iter_pku_files(5, 1), r"num_videos must be in 6\.\..*without test"),
    (lambda: synthetic.iter_pku_files(1015, 1, phase=2), r"num_videos must be in 6\.\.1014"),
    (lambda: synthetic.synthesize_clip(np.random.default_rng(0), 17,
                                       synthetic.make_subject(0, 1), synthetic.make_camera(0.0)),
     r"action must be in 0\.\.16"),
    (lambda: synthetic.make_subject(0, 0), "performer ids are 1-based"),
    (lambda: synthetic.make_subject(-2, 1), "seed must be a non-negative integer"),
    (lambda: synthetic.ntu_camera(0, 1, 4), r"camera_id in 1\.\.3"),
    (lambda: synthetic.ntu_camera(0, 0, 1), "setup >= 1"),
    (lambda: synthetic.make_camera(0.0, height=0.0), "must be positive"),
])
def test_bad_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_reports_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main(["--out", str(tmp_path), "--clips", "0"])
    assert exit_info.value.code == 2
    assert "num_clips must be in 1..69360" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# PKU-MMD


def _pku_names(phase):
    return r"^\d{4}-[LMR]$" if phase == 1 else r"^A\d{2}N\d{2}-[LMR]$"


def _read_split(path):
    lines = path.read_text().split("\n")
    assert lines[0] == "Training videos:" and lines[2] == "Validation videos:"
    assert lines[4:] == [""]
    return [{name.strip() for name in lines[i].split(",") if name.strip()} for i in (1, 3)]


@pytest.mark.parametrize("phase, seed", [(1, 0), (2, 1)])
def test_pku_layout_labels_and_splits(tmp_path, phase, seed):
    paths = synthetic.write_pku_dataset(tmp_path, 6, seed, phase=phase)
    videos = sorted(p.stem for p in (tmp_path / "PKU_Skeleton_Renew").iterdir())
    assert len(videos) == 6 and all(re.match(_pku_names(phase), v) for v in videos)
    assert sorted(p.stem for p in (tmp_path / "Train_Label_PKU_final").iterdir()) == videos
    assert len(paths) == 2 * 6 + 2
    saw_partner = False
    for video in videos:
        text = (tmp_path / "PKU_Skeleton_Renew" / f"{video}.txt").read_text()
        assert "\r" not in text
        rows = np.loadtxt(text.splitlines())
        assert rows.ndim == 2 and rows.shape[1] == 150
        labels = np.loadtxt(tmp_path / "Train_Label_PKU_final" / f"{video}.txt", delimiter=",",
                            dtype=int, ndmin=2)
        assert set(labels[:, 0]) <= set(synthetic.PKU_LABELS)
        assert np.all((1 <= labels[:, 1]) & (labels[:, 1] <= labels[:, 2])
                      & (labels[:, 2] <= len(rows)))
        assert np.all(labels[1:, 1] > labels[:-1, 2]) and set(labels[:, 3]) <= {1, 2}
        second = np.abs(rows[:, 75:]).sum(axis=1) > 0
        assert np.all((rows[:, 75:] != 0).all(axis=1) == second)  # Whole bodies or zeros.
        handshake = synthetic.PKU_LABELS[synthetic.ACTION_NAMES.index("handshaking")]
        if handshake in labels[:, 0]:
            saw_partner = True
            assert second.all()
        if phase == 1:  # Actions move more than the idle gaps between them.
            actor = (rows[:, :75] - np.tile(rows[:, 3:6], 25)).T
            smooth = np.stack([np.convolve(c, np.ones(9) / 9, mode="same") for c in actor], 1)
            speed = np.linalg.norm(np.diff(smooth.reshape(-1, 25, 3), axis=0), axis=-1).mean(1)
            inside = np.zeros(len(speed), dtype=bool)
            for _, start, end, _ in labels:
                inside[start - 1:end - 1] = True
            assert np.median(speed[inside]) > 1.5 * np.median(speed[~inside])
    assert saw_partner
    stem = videos[0][:-2]
    label_texts = {(tmp_path / "Train_Label_PKU_final" / f"{stem}-{v}.txt").read_text()
                   for v in "LMR"}
    assert len(label_texts) == 1  # The three views of a performance share their labels.
    xsub = "cross-subject.txt" if phase == 1 else "cross_subject_v2.txt"
    xview = "cross-view.txt" if phase == 1 else "cross_view_v2.txt"
    for name in (xsub, xview):
        train, test = _read_split(tmp_path / "Split" / name)
        assert train and test and not train & test and train | test == set(videos)
    assert _read_split(tmp_path / "Split" / xview)[1] == {v for v in videos if v.endswith("-L")}


def test_pku_is_deterministic_and_cli_writes_it(tmp_path, capsys):
    first = [(f.path, f.data) for f in synthetic.iter_pku_files(6, 5, phase=2)]
    assert first == [(f.path, f.data) for f in synthetic.iter_pku_files(6, 5, phase=2)]
    assert first != [(f.path, f.data) for f in synthetic.iter_pku_files(6, 6, phase=2)]
    assert synthetic.main(["--out", str(tmp_path), "--clips", "6", "--seed", "5", "--format",
                           "pku", "--phase", "2"]) == 0
    written = {(str(p.relative_to(tmp_path)), p.read_bytes()) for p in tmp_path.rglob("*.txt")}
    assert written == set(first)
    assert "Action instances" in capsys.readouterr().out
