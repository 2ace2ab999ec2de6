"""PKU-MMD metadata: action names and the official split-file names (data.md §3).

Phase 2 keeps the phase-1 id space (51 ids; only a subset occurs in phase 2), as the ISC-derived
option files and MAMP do, so a label means the same action in both phases.
"""

# Alphabetical by id, as two independent third-party sources list them (data.md §3.6).
ACTION_NAMES = (
    "bow", "brushing hair", "brushing teeth", "check time (from watch)", "cheer up", "clapping",
    "cross hands in front (say stop)", "drink water", "drop", "eat meal/snack", "falling",
    "giving something to other person", "hand waving", "handshaking", "hopping (one foot jumping)",
    "hugging other person", "jump up", "kicking other person", "kicking something",
    "make a phone call/answer phone", "pat on back of other person", "pickup",
    "playing with phone/tablet", "point finger at the other person",
    "pointing to something with finger", "punching/slapping other person", "pushing other person",
    "put on a hat/cap", "put something inside pocket", "reading", "rub two hands together",
    "salute", "sitting down", "standing up", "take off a hat/cap", "take off glasses",
    "take off jacket", "take out something from pocket", "taking a selfie", "tear up paper",
    "throw", "touch back (backache)", "touch chest (stomachache/heart pain)",
    "touch head (headache)", "touch neck (neckache)", "typing on a keyboard",
    "use a fan (with hand or paper)/feeling warm", "wear jacket", "wear on glasses", "wipe face",
    "writing",
)

# Official split files shipped in the download's Split/ folder, per phase and protocol.
SPLIT_FILES = {
    (1, "xsub"): "cross-subject.txt",
    (1, "xview"): "cross-view.txt",
    (2, "xsub"): "cross_subject_v2.txt",
    (2, "xview"): "cross_view_v2.txt",
}
