"""`dora validate`: placeholder, replaced by the model work."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate_cmd() -> None:
        """Check YAML files offline."""
        raise typer.Exit(0)
