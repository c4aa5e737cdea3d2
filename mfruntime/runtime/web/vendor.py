"""The web page's one third-party library, three.js (MIT), for the 3D rig preview: fetched from the npm registry
at setup time (``python -m mfruntime.runtime.web.vendor``; ``make setup`` runs it), checked against the
registry's sha512 integrity for the pinned version, and unpacked into ``static/vendor/three/`` — only the files
the page imports, in the package's own layout, with its licence. Nothing is fetched when the page runs: the
server serves these files, and without them the page shows the face video and says how to add the preview.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "three"
VERSION = "0.187.0"
INTEGRITY = "sha512-Qiu7R+Cmh8CstZsY1uJOSWnVlfo7ZtNLV7mF8Jltk3LB3AtDu9cRZlcnRKkAk8Y4z6KKw35z7Y7Urd7jWY8etA=="
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
FILES = ("LICENSE", "build/three.module.js", "build/three.core.js", "examples/jsm/loaders/GLTFLoader.js",
         "examples/jsm/utils/BufferGeometryUtils.js", "examples/jsm/utils/SkeletonUtils.js")
DEST = Path(__file__).resolve().parent / "static" / "vendor" / "three"
STAMP = ".version"


def installed(dest: Path = DEST) -> bool:
    """Whether the pinned three.js files are in ``dest``."""
    stamp = dest / STAMP
    return stamp.is_file() and stamp.read_text().strip() == VERSION and all((dest / f).is_file() for f in FILES)


def check_integrity(data: bytes, integrity: str | None = None) -> None:
    """A ValueError unless ``data`` has the npm ``sha512-…`` integrity given (default: the pinned one)."""
    algo, _, want = (integrity or INTEGRITY).partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise ValueError(f"{PACKAGE} {VERSION}: the download does not match the registry's {algo} integrity "
                         f"(got {algo}-{got[:16]}…): not unpacked")


def unpack(data: bytes, dest: Path = DEST) -> None:
    """The FILES of the package tarball ``data`` into ``dest`` (checked first)."""
    check_integrity(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in FILES:
            member = tar.getmember(f"package/{name}")
            if not member.isfile():
                raise ValueError(f"{PACKAGE} {VERSION}: package/{name} is not a file")
            out = dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    (dest / STAMP).write_text(VERSION + "\n")


def fetch(dest: Path = DEST, timeout: float = 120.0) -> None:
    with urllib.request.urlopen(TARBALL, timeout=timeout) as r:  # noqa: S310 (a pinned https address)
        data = r.read()
    unpack(data, dest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-file", metavar="TGZ", help=f"unpack this {PACKAGE}-{VERSION}.tgz instead of downloading it")
    args = p.parse_args(argv)
    if installed() and not args.from_file:
        print(f"{PACKAGE} {VERSION} is already in {DEST}")
        return 0
    try:
        if args.from_file:
            unpack(Path(args.from_file).read_bytes())
        else:
            fetch()
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        print(f"could not add {PACKAGE} {VERSION} for the web page's 3D preview: {exc}. The page works without it "
              f"(face video, voice, controls); to add it later, run: python -m mfruntime.runtime.web.vendor "
              f"(or download {TARBALL} and pass --from-file)", file=sys.stderr)
        return 1
    print(f"{PACKAGE} {VERSION} unpacked into {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
