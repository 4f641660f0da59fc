"""`dora validate`: check manifests offline, with the same rules the API applies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dora.model import DocumentResult, Issue

HELP = """Check YAML manifests offline: every document is parsed with the rules the
API server uses, and every problem is printed with its file, document number,
field path and reason.

Exit status: 0 when every document is valid, 1 when some document is invalid,
2 when a path cannot be read.
"""

EPILOG = """Examples:

  dora validate -f job.yaml                 one file

  dora validate -f manifests/               every *.yaml / *.yml below a folder

  dora validate -f zone.yaml -f nodes.yaml  several files

  cat job.yaml | dora validate -f -         standard input
"""


def _issue_line(issue: Issue) -> str:
    line = f"error {issue}"
    if issue.line is not None:
        line += f" (line {issue.line})"
    return line


def _ok_line(result: DocumentResult) -> str:
    resource = result.resource
    assert resource is not None
    where = f"{result.source} doc {result.index}" if result.source else f"doc {result.index}"
    return f"ok   {where}: {resource.kind} {resource.name}"


def run_validate(paths: list[str], *, quiet: bool = False) -> int:
    """Validate ``paths``, print one line per document or issue, return the exit status."""
    # Imported here so that `dora --help` and other commands do not pay for building
    # every pydantic model.
    from dora.model import check_paths

    report = check_paths(paths)
    valid = invalid = 0
    for result in report.results:
        if result.ok:
            valid += 1
            if not quiet:
                typer.echo(_ok_line(result))
        else:
            invalid += 1
            for issue in result.issues:
                typer.echo(_issue_line(issue))
    for problem in report.unreadable:
        typer.echo(f"error {problem.path}: cannot read: {problem.reason}")
    typer.echo(f"{valid} documents valid, {invalid} invalid")
    if report.unreadable:
        return 2
    return 1 if invalid else 0


def register(app: typer.Typer) -> None:
    """Add the ``validate`` command to the ``dora`` app."""

    @app.command("validate", help=HELP, epilog=EPILOG)
    def validate_cmd(
        files: Annotated[
            list[str] | None,
            typer.Option(
                "-f",
                "--filename",
                metavar="FILE|DIR|-",
                help="A YAML file, a folder (every *.yaml/*.yml below it) or - for stdin. "
                "Repeat for several.",
            ),
        ] = None,
        paths: Annotated[
            list[str] | None,
            typer.Argument(metavar="PATH", help="More files or folders, as with -f."),
        ] = None,
        quiet: Annotated[
            bool, typer.Option("-q", "--quiet", help="Print only problems and the summary.")
        ] = False,
    ) -> None:
        targets = [*(files or []), *(paths or [])]
        if not targets:
            typer.echo(
                "error: give at least one -f FILE|DIR|- (see dora validate --help)", err=True
            )
            raise typer.Exit(2)
        raise typer.Exit(run_validate(targets, quiet=quiet))
