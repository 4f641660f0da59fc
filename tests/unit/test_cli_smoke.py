import os
import subprocess
import sys
from pathlib import Path

from dora import __version__


def test_version_command_prints_client_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dora.cli.main", "version", "--client"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"client  {__version__}"


def test_up_refuses_an_unknown_gpu_mode_before_starting_anything(tmp_path: Path) -> None:
    env = {**os.environ, "DORA_GPU_MODE": "bogus"}
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "dora.cli.main", "up", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2, out
    assert "DORA_GPU_MODE must be device-request or runtime-env" in out.stderr
    assert not data.exists()
