"""NTU RGB+D 60/120 metadata: sample names, official benchmark splits and action names.

Facts from the official NTU RGB+D README and the ISC/2s-AGCN generators (data.md §1.2, §1.6, §1.8).
"""

import re
from typing import NamedTuple

# Official cross-subject training performers. The first 20 are NTU-60's; NTU-120 adds 33.
NTU60_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103)
NTU60_TRAIN_CAMERAS = (2, 3)
NTU120_TRAIN_SETUPS = tuple(range(2, 33, 2))

NTU60_NUM_SETUPS = 17
NTU60_NUM_CLASSES = 60
NTU120_NUM_CLASSES = 120

BENCHMARKS = ("xsub60", "xview60", "xsub120", "xset120")

ACTION_NAMES = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
    "wear on glasses", "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up",
    "hand waving", "kicking something", "reach into pocket", "hopping (one foot jumping)",
    "jump up", "make a phone call/answer phone", "playing with phone/tablet",
    "typing on a keyboard", "pointing to something with finger", "taking a selfie",
    "check time (from watch)", "rub two hands together", "nod head/bow", "shake head",
    "wipe face", "salute", "put the palms together", "cross hands in front (say stop)",
    "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache/heart pain)", "touch back (backache)", "touch neck (neckache)",
    "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up",
    "thumb down", "make ok sign", "make victory sign", "staple book", "counting money",
    "cutting nails", "cutting paper (using scissors)", "snapping fingers", "open bottle",
    "sniff (smell)", "squat down", "toss a coin", "fold paper", "ball up paper", "play magic cube",
    "apply cream on face", "apply cream on hand back", "put on bag", "take off bag",
    "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms",
    "arm circles", "arm swings", "running on the spot", "butt kicks (kick backward)",
    "cross toe touch", "side kick", "yawn", "stretch oneself", "blow nose",
    "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person", "follow other person",
    "whisper in other person's ear", "exchange things with other person",
    "support somebody with hand", "finger-guessing game (playing rock-paper-scissors)",
)

_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")


class SampleId(NamedTuple):
    """The fields of an NTU sample name such as ``S001C002P003R002A013`` (all 1-based)."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int

    @property
    def name(self) -> str:
        """The 20-character sample name."""
        return "S%03dC%03dP%03dR%03dA%03d" % self


def parse_sample_name(name: str) -> SampleId:
    """Parses an NTU sample name, with or without the ``.skeleton`` suffix.

    Args:
      name: e.g. ``S001C002P003R002A013`` or ``S001C002P003R002A013.skeleton``.

    Returns:
      The parsed fields.

    Raises:
      ValueError: if the name does not have the official ``SsssCcccPpppRrrrAaaa`` form.
    """
    stem = name[: -len(".skeleton")] if name.endswith(".skeleton") else name
    match = _NAME_RE.match(stem)
    if match is None:
        raise ValueError(
            f"{name!r} is not an NTU RGB+D sample name of the form SsssCcccPpppRrrrAaaa "
            "(e.g. S001C002P003R002A013)")
    return SampleId(*(int(g) for g in match.groups()))


def is_train(sample: SampleId, benchmark: str) -> bool:
    """Whether a sample belongs to the training split of an official benchmark.

    Args:
      sample: parsed sample name.
      benchmark: one of ``BENCHMARKS``.

    Returns:
      True for the training split, False for the test split.

    Raises:
      ValueError: for an unknown benchmark.
    """
    if benchmark in ("xsub60", "xsub120"):
        return sample.subject in NTU120_TRAIN_SUBJECTS
    if benchmark == "xview60":
        return sample.camera in NTU60_TRAIN_CAMERAS
    if benchmark == "xset120":
        return sample.setup in NTU120_TRAIN_SETUPS
    raise ValueError(f"unknown NTU benchmark {benchmark!r}; expected one of {BENCHMARKS}")


def in_dataset(sample: SampleId, benchmark: str) -> bool:
    """Whether a sample is part of the benchmark's dataset (NTU-60 is setups 1-17, actions 1-60)."""
    if benchmark.endswith("60"):
        return sample.setup <= NTU60_NUM_SETUPS and sample.action <= NTU60_NUM_CLASSES
    return sample.action <= NTU120_NUM_CLASSES


def read_missing_list(text: str) -> frozenset[str]:
    """Parses an official ``*_samples_with_missing_skeletons.txt`` list.

    The official files start with two sentences and a blank line; copies elsewhere have no header.
    Only lines that are sample names count.

    Args:
      text: the file's content.

    Returns:
      The sample names (without suffix).
    """
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.endswith(".skeleton"):
            line = line[: -len(".skeleton")]
        if _NAME_RE.match(line):
            names.add(line)
    return frozenset(names)
