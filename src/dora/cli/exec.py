"""`dora logs` and `dora shell`: a container's output, and commands inside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dora.cli.common import (
    CaCertOpt,
    DebugOpt,
    InsecureOpt,
    ProfileOpt,
    WorkspaceOpt,
    ZoneOpt,
    client_for,
    fail,
    handle_errors,
)

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

CONTAINER_KINDS = ("c", "container", "containers")
INTERACTIVE_SHELL = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh"]
"""Without a command: bash where the image has it, else sh."""
EXIT_LOST = 255
"""The session ended without an exit status (like ssh)."""


def _container(kind: str, name: str) -> str:
    if kind.lower() not in CONTAINER_KINDS:
        hint = f"; `dora get c` lists the containers of workload {name}" if kind in ("wk",) else ""
        raise fail(f"logs and shells are per container: use `c NAME`{hint}", 2)
    return name


# --------------------------------------------------------------------------- logs


@handle_errors
def logs_cmd(
    kind: Annotated[str, typer.Argument(help="c (container)")],
    name: Annotated[str, typer.Argument(help="the container's name, e.g. my-job.1")],
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="keep printing new output")
    ] = False,
    tail: Annotated[
        str | None, typer.Option("--tail", help="only the last N lines (default: all)")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="only output newer than 10m, 1h30m, 2d or an ISO time"),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("-t", "--timestamps", help="prefix lines with their time")
    ] = False,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print a container's output (stdout and stderr).

    Examples:

      dora logs c my-job.1

      dora logs c my-job.1 -f --tail 20

      dora logs c my-job.1 --since 10m --timestamps
    """
    from dora.client.exec import log_chunks
    from dora.exec_protocol import ProtocolError, check_tail, parse_since

    _container(kind, name)
    try:
        tail_value = check_tail(tail) if tail is not None else None
        since_value = parse_since(since) if since else None
    except ProtocolError as exc:
        raise fail(str(exc), 2) from None
    out = sys.stdout.buffer
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        try:
            for chunk in log_chunks(
                dora,
                name,
                zone=zone,
                workspace=workspace,
                follow=follow,
                tail=tail_value,
                since=since_value,
                timestamps=timestamps,
            ):
                out.write(chunk)
                out.flush()
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # `dora logs … | head`: the reader is gone; stop quietly.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None


# --------------------------------------------------------------------------- shell


@handle_errors
def shell_cmd(
    kind: Annotated[str, typer.Argument(help="c (container)")],
    name: Annotated[str, typer.Argument(help="the container's name, e.g. my-job.1")],
    cmd: Annotated[
        list[str] | None,
        typer.Argument(help="command to run (after --); default: an interactive shell"),
    ] = None,
    tty: Annotated[
        bool | None,
        typer.Option(
            "-t/-T",
            "--tty/--no-tty",
            help="allocate a terminal (default: yes without a command, when stdin is one)",
        ),
    ] = None,
    stdin: Annotated[
        bool | None,
        typer.Option(
            "-i/-I",
            "--stdin/--no-stdin",
            help="send stdin to the command (default: yes, unless it is a terminal and a "
            "command is given)",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    zone: ZoneOpt = None,
    profile: ProfileOpt = None,
    insecure: InsecureOpt = False,
    ca_cert: CaCertOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Open a shell in a running container, or run one command in it.

    Without a command: an interactive shell (bash, else sh); leave with `exit` or Ctrl-D.

    With a command (after --): its output is passed through, and its exit code is dora's.

    Examples:

      dora shell c my-job.1

      dora shell c my-job.1 -- nvidia-smi

      dora shell c my-job.1 -- sh -c 'ls /data | wc -l'

      tar c ./src | dora shell c my-job.1 -- tar x -C /workspace
    """
    _container(kind, name)
    stdin_is_tty = sys.stdin.isatty()
    interactive = not cmd
    use_tty = tty if tty is not None else (interactive and stdin_is_tty)
    send_stdin = stdin if stdin is not None else (interactive or not stdin_is_tty)
    argv = list(cmd) if cmd else list(INTERACTIVE_SHELL)
    with client_for(profile, insecure=insecure, ca_cert=ca_cert) as dora:
        server = dora.server
        authorization = dora._http.headers.get("authorization", "")
        verify = dora._verify
    try:
        code = asyncio.run(
            _shell(
                server,
                authorization,
                verify,
                name,
                argv,
                tty=use_tty,
                send_stdin=send_stdin,
                zone=zone,
                workspace=workspace,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)


def _terminal_size() -> tuple[int, int]:
    size = os.get_terminal_size(sys.stdout.fileno() if sys.stdout.isatty() else 0)
    return size.columns, size.lines


class _Stdin:
    """Reads stdin without blocking the loop: a reader callback where the file can be
    polled (terminals, pipes), a daemon thread otherwise (files, /dev/null)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self.fd = sys.stdin.fileno()
        self._reader = False
        self._paused = False
        self._ended = False

    def start(self) -> None:
        try:
            self.loop.add_reader(self.fd, self._readable)
            self._reader = True
        except (OSError, ValueError, NotImplementedError):
            threading.Thread(target=self._thread, name="dora-stdin", daemon=True).start()

    async def get(self) -> bytes:
        data = await self.queue.get()
        if self._paused and not self._ended:
            self._paused = False
            self.loop.add_reader(self.fd, self._readable)
        return data

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.queue.put_nowait(data)
        if not data:
            self._ended = True
            self.stop()
        elif self.queue.full():
            # Back-pressure: stop reading until the connection took some.
            self.loop.remove_reader(self.fd)
            self._paused = True

    def _thread(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            future = asyncio.run_coroutine_threadsafe(self.queue.put(data), self.loop)
            try:
                future.result()
            except Exception:
                return
            if not data:
                return

    def stop(self) -> None:
        if self._reader:
            self.loop.remove_reader(self.fd)
            self._reader = False
            self._ended = True


async def _shell(
    server: str,
    authorization: str,
    verify: bool | str,
    name: str,
    argv: list[str],
    *,
    tty: bool,
    send_stdin: bool,
    zone: str | None,
    workspace: str | None,
) -> int:
    from dora.client.exec import open_shell

    ws = await open_shell(
        server, authorization, verify, name, argv, tty=tty, zone=zone, workspace=workspace
    )
    restore: Callable[[], None] = lambda: None  # noqa: E731
    loop = asyncio.get_running_loop()
    reader: _Stdin | None = None
    try:
        if tty and sys.stdin.isatty():
            restore = _raw_terminal(sys.stdin.fileno())
            await _send_size(ws)
            resizes: set[asyncio.Task[None]] = set()

            def on_resize() -> None:
                task = loop.create_task(_send_size(ws))
                resizes.add(task)
                task.add_done_callback(resizes.discard)

            loop.add_signal_handler(signal.SIGWINCH, on_resize)
        if send_stdin:
            reader = _Stdin(loop)
            reader.start()
        return await _pump(ws, reader)
    finally:
        if reader is not None:
            reader.stop()
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGWINCH)
        restore()
        await ws.close()


def _raw_terminal(fd: int) -> Callable[[], None]:
    import termios
    import tty as tty_module

    saved = termios.tcgetattr(fd)
    tty_module.setraw(fd)

    def restore() -> None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return restore


async def _send_size(ws: ClientConnection) -> None:
    from dora.exec_protocol import resize_frame

    with contextlib.suppress(OSError, Exception):
        cols, rows = _terminal_size()
        if cols > 0 and rows > 0:  # a fresh pseudo-terminal may say 0×0: nothing to tell
            await ws.send(resize_frame(cols, rows))


async def _pump(ws: ClientConnection, reader: _Stdin | None) -> int:
    """Stdin → the container, its output → ours, until it exits; its exit code."""
    from websockets.exceptions import ConnectionClosed

    from dora.exec_protocol import EOF_FRAME, STDERR, STDIN, frame

    async def forward() -> None:
        if reader is None:
            await ws.send(EOF_FRAME)
            return
        while True:
            data = await reader.get()
            if not data:
                await ws.send(EOF_FRAME)
                return
            await ws.send(frame(STDIN, data))

    sender = asyncio.create_task(forward())
    out, err = sys.stdout.buffer, sys.stderr.buffer
    code: int | None = None
    error: str | None = None
    try:
        async for message in ws:
            if isinstance(message, bytes):
                target = err if message[:1] == bytes((STDERR,)) else out
                target.write(message[1:])
                target.flush()
                continue
            control: Any = {}
            with contextlib.suppress(ValueError):
                control = json.loads(message)
            if isinstance(control, dict):
                if isinstance(control.get("exit"), int):
                    code = control["exit"]
                if control.get("error"):
                    error = str(control["error"])
    except ConnectionClosed:
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    if error:
        sys.stderr.write(f"\r\nerror: {error}\n")
        sys.stderr.flush()
    if code is None:
        if not error:
            sys.stderr.write("\r\nerror: the session ended without an exit status\n")
            sys.stderr.flush()
        return EXIT_LOST
    return code


def register(app: typer.Typer) -> None:
    app.command("logs")(logs_cmd)
    app.command("shell")(shell_cmd)
