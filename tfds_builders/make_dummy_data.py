"""Writes the builders' ``dummy_data/`` folders from the synthetic generator.

  python -m tfds_builders.make_dummy_data

Clips are cut short so that the committed fixtures stay small. NTU samples go half into an
official-named zip archive and half into plain files, with a missing-skeleton list naming one of
them, so the builder tests see every source layout.
"""

import io
import pathlib
import zipfile

from skel_jax.data import ntu_sources
from skel_jax.data import synthetic

_HERE = pathlib.Path(__file__).parent
NTU_FRAMES = 12
PKU_ROWS = 60


def truncate_ntu(data: bytes, num_frames: int) -> bytes:
    """Keeps the first ``num_frames`` frames of an NTU ``.skeleton`` text."""
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    lines = data.split(newline)
    kept, pos = [], 1
    for _ in range(min(num_frames, int(lines[0]))):
        num_bodies = int(lines[pos])
        end = pos + 1 + num_bodies * 27  # Body info, joint count and 25 joint lines per body.
        kept.extend(lines[pos:end])
        pos = end
    header = str(min(num_frames, int(lines[0]))).encode()
    return newline.join([header, *kept, b""])


def truncate_pku_labels(data: bytes, num_rows: int) -> bytes:
    """Keeps label rows that start within the first ``num_rows`` frames, ending them there."""
    rows = []
    for line in data.decode().splitlines():
        label, start, end, confidence = (int(v) for v in line.split(","))
        if start <= num_rows:
            rows.append(f"{label},{start},{min(end, num_rows)},{confidence}")
    return ("\n".join(rows) + "\n").encode()


def write_ntu(out: pathlib.Path):
    files = list(synthetic.iter_ntu_files(8, seed=0, num_classes=4))
    archive_name = ntu_sources.ARCHIVE_NAMES[0]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files[:4]:
            zf.writestr(f"{archive_name[:-4]}/{f.path}", truncate_ntu(f.data, NTU_FRAMES))
    (out / archive_name).write_bytes(buffer.getvalue())
    (out / "extracted").mkdir()
    for f in files[4:]:
        (out / "extracted" / f.path).write_bytes(truncate_ntu(f.data, NTU_FRAMES))
    missing = pathlib.PurePath(files[-1].path).stem
    (out / ntu_sources.MISSING_LIST_NAMES[60]).write_text(
        "The following samples have missing skeletons.\nPlease ignore them.\n\n"
        f"{missing}\n")


def write_pku(out: pathlib.Path):
    for phase in (1, 2):
        for f in synthetic.iter_pku_files(synthetic.PKU_MIN_VIDEOS, seed=phase, phase=phase,
                                          num_classes=4):
            path = out / f"phase{phase}" / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            data = f.data
            if f.path.startswith("PKU_Skeleton_Renew/"):
                data = b"\n".join(data.split(b"\n")[:PKU_ROWS]) + b"\n"
            elif f.path.startswith("Train_Label_PKU_final/"):
                data = truncate_pku_labels(data, PKU_ROWS)
            path.write_bytes(data)


def main():
    for name, write in (("ntu_rgbd", write_ntu), ("pku_mmd", write_pku)):
        out = _HERE / name / "dummy_data"
        if out.exists():
            raise FileExistsError(f"{out} exists; remove it to regenerate it.")
        out.mkdir()
        write(out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
