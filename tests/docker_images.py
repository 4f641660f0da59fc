"""Test images, built locally (no registry is reachable): the busybox root file system
of `dora.images`, imported once per engine under a test tag."""

from __future__ import annotations

import subprocess

from dora import images

BUSYBOX_IMAGE = "dora-test/busybox:1"


def ensure_busybox_image(tag: str = BUSYBOX_IMAGE) -> str:
    """Build `tag` with ``docker import`` unless the engine already has it."""
    images.ensure_busybox_image(tag)
    return tag


def tag_image(source: str, tag: str) -> None:
    subprocess.run(["docker", "tag", source, tag], capture_output=True, check=True, timeout=30)


def remove_image(tag: str) -> None:
    """Remove one tag (never the image other tags still point at)."""
    subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False, timeout=30)
