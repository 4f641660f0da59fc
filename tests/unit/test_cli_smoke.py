import subprocess
import sys

from dora import __version__


def test_version_command_prints_client_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dora.cli.main", "version", "--client"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"client  {__version__}"
