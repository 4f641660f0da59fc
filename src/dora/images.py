"""Tiny local images, built without any registry: a root file system holding Debian's
static busybox, imported with ``docker import``. Used by `dora up`'s sample workload
(and by the tests), because no registry may be reachable from the machine."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
APPLETS = (
    "sh", "echo", "sleep", "cat", "true", "false", "env", "ls", "hostname", "date",
    "uname", "head", "tail", "wc", "id", "ps", "mkdir", "rm", "touch", "grep", "sed",
    "seq", "printf", "yes", "stty", "tty", "nproc", "free", "df", "test", "kill", "stat",
    "mount",
)  # fmt: skip
SAMPLE_IMAGE = "dora/hello:1"


class ImageError(RuntimeError):
    """The image cannot be built here; the message says what is missing."""


def busybox_path() -> Path:
    for path in BUSYBOX_CANDIDATES:
        if path.is_file():
            return path
    raise ImageError(
        "busybox is missing: install Debian's busybox-static (apt-get install busybox-static)"
    )


def busybox_rootfs() -> bytes:
    """A tar of /bin/busybox, its applets as symlinks, /tmp, /etc/passwd."""
    busybox = busybox_path()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "etc", "dev", "proc", "sys", "root"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
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


def image_present(tag: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=60
    )
    return result.returncode == 0


def ensure_busybox_image(tag: str = SAMPLE_IMAGE) -> bool:
    """Build `tag` unless the engine has it; True when it was built now."""
    if shutil.which("docker") is None:
        raise ImageError("the docker command is missing: install Debian's docker.io")
    if image_present(tag):
        return False
    done = subprocess.run(
        ["docker", "import", "--change", 'CMD ["sh"]', "--change", "ENV PATH=/bin", "-", tag],
        input=busybox_rootfs(),
        capture_output=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise ImageError(f"docker import failed: {done.stderr.decode(errors='replace').strip()}")
    return True
