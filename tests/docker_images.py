"""Test images for the node agent, built locally: no registry is reachable.

`ensure_busybox_image()` packs Debian's static busybox (``/bin/busybox``) and a few
applet symlinks into a tar and ``docker import``s it. It takes a second and is done
once per engine (the tag is reused when present).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX_IMAGE = "dora-test/busybox:1"
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "echo",
    "sleep",
    "cat",
    "true",
    "false",
    "env",
    "ls",
    "touch",
    "mkdir",
    "rm",
    "id",
    "printf",
    "test",
    "wc",
    "head",
    "kill",
    "nproc",
    "stat",
    "df",
    "mount",
)


def _image_present(tag: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=30
    )
    return result.returncode == 0


def busybox_tar() -> bytes:
    """A root file system: /bin/busybox, /bin/<applet> → busybox, /tmp, /etc/passwd."""
    if not BUSYBOX.is_file():
        raise RuntimeError(
            f"{BUSYBOX} is missing: install Debian's busybox-static "
            "(apt-get install busybox-static)"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "etc", "dev", "proc", "sys"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


def ensure_busybox_image(tag: str = BUSYBOX_IMAGE) -> str:
    """Build `tag` with ``docker import`` unless the engine already has it."""
    if shutil.which("docker") is None:
        raise RuntimeError("the docker CLI is missing: run scripts/services.sh")
    if _image_present(tag):
        return tag
    subprocess.run(
        ["docker", "import", "--change", 'CMD ["sh"]', "--change", "ENV PATH=/bin", "-", tag],
        input=busybox_tar(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return tag


def tag_image(source: str, tag: str) -> None:
    subprocess.run(["docker", "tag", source, tag], capture_output=True, check=True, timeout=30)


def remove_image(tag: str) -> None:
    """Remove one tag (never the image other tags still point at)."""
    subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False, timeout=30)


if __name__ == "__main__":
    print(ensure_busybox_image())
