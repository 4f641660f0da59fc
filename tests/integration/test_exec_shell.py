"""Shell and logs end to end: the `dora` CLI and the SDK → a real API server → a real
node agent's TLS exec server → a real Docker container (busybox built locally).

Container records are assigned to the node in the store, as the scheduler would; the
agent starts them; everything after that goes through the API's public routes."""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import subprocess
import termios
import time

import pytest

from dora.client import AsyncClient, Client, Conflict, NotFound
from dora.exec_protocol import STDIN, frame, resize_frame
from tests.helpers import ZONE, create_container, unique, wait_until
from tests.integration.exec_fixtures import (
    TICKER,
    ExecEnv,
    dora_argv,
    exec_env_fixture,
    lines,
    read_until,
    scoped,
)
from tests.integration.node_fixtures import WORKSPACE

env = exec_env_fixture()
SCOPE = {"zone": ZONE, "workspace": WORKSPACE}


@pytest.fixture(scope="module")
def ticker(env: ExecEnv) -> str:
    """A running container with a few lines of output (stdout and stderr)."""
    name = env.run_container(["sh", "-c", TICKER])
    with env.client() as dora:
        wait_until(lambda: len(list(dora.logs(name, **SCOPE))) >= 3, within=10, what="first lines")
    return name


@pytest.fixture(scope="module")
def sleeper(env: ExecEnv) -> str:
    return env.run_container("sleep 3600")


# ------------------------------------------------------------------------------ logs


def test_logs_tail_and_timestamps_through_the_sdk(env: ExecEnv, ticker: str) -> None:
    with env.client() as dora:
        everything = list(dora.logs(ticker, **SCOPE))
        assert sorted(everything[:3]) == ["first", "oops", "second"]  # stdout and stderr
        last = list(dora.logs(ticker, tail=1, **SCOPE))
        assert len(last) == 1 and last[0] in ("first", "second", "oops")
        stamped = list(dora.logs(ticker, tail=2, timestamps=True, **SCOPE))
        assert len(stamped) == 2
        for line in stamped:
            when, _, text = line.partition(" ")
            assert when[:4].isdigit() and "T" in when and when.endswith("Z"), line
            assert text in ("first", "second", "oops")
        assert list(dora.logs(ticker, since=time.time() + 3600, **SCOPE)) == []


def test_logs_follow_sees_a_new_line(env: ExecEnv, ticker: str) -> None:
    """Follow from now on (tail 0), then make the container print: the line arrives."""

    async def follow() -> list[str]:
        seen: list[str] = []
        async with AsyncClient(env.api.url, env.tokens["dev"]) as dora:

            async def read() -> None:
                async for line in dora.logs(ticker, follow=True, tail=0, **SCOPE):
                    seen.append(line)
                    return

            reader = asyncio.create_task(read())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not reader.done():  # until the stream is open, a touch may go unseen
                assert loop.time() < deadline, "follow saw no new line"
                result = await dora.exec(ticker, ["touch", "/tmp/go"], **SCOPE)
                assert result.exit_code == 0, result
                await asyncio.wait({reader}, timeout=1.0)
            await reader
        return seen

    assert asyncio.run(follow()) == ["new-line"]


def test_dora_logs_cli(env: ExecEnv, ticker: str) -> None:
    done = env.dora(*scoped("logs", "c", ticker, "--tail", "2", "--timestamps"))
    assert done.returncode == 0, done.stderr
    assert len(lines(done.stdout)) == 2
    done = env.dora(*scoped("logs", "c", ticker, "--since", "1h"))
    assert done.returncode == 0, done.stderr
    assert {"first", "second", "oops"} <= set(lines(done.stdout))
    done = env.dora(*scoped("logs", "c", "no-such.1"))
    assert done.returncode == 1
    assert b"not found" in done.stderr
    done = env.dora(*scoped("logs", "wk", ticker))
    assert done.returncode == 2 and b"per container" in done.stderr


# ------------------------------------------------------------------------------ exec


def test_sdk_exec_echo_and_exit_code(env: ExecEnv, sleeper: str) -> None:
    with env.client() as dora:
        result = dora.exec(sleeper, ["echo", "hi"], **SCOPE)
        assert (result.exit_code, result.stdout, result.stderr) == (0, b"hi\n", b"")
        result = dora.exec(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 3"], **SCOPE)
        assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
        result = dora.exec(sleeper, ["cat"], stdin=b"fed through stdin\n", **SCOPE)
        assert (result.exit_code, result.stdout) == (0, b"fed through stdin\n")
        result = dora.exec(sleeper, ["no-such-binary"], **SCOPE)
        assert result.exit_code == 126 or result.exit_code == 127, result
        with pytest.raises(NotFound):
            dora.exec("no-such.1", ["true"], **SCOPE)


def test_dora_shell_passes_the_exit_code_and_streams(env: ExecEnv, sleeper: str) -> None:
    done = env.dora(*scoped("shell", "c", sleeper, "--", "sh", "-c", "exit 3"))
    assert done.returncode == 3, done.stderr
    done = env.dora(*scoped("shell", "c", sleeper, "--", "sh", "-c", "echo out; echo err >&2"))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"out\n", b"err\n")
    done = env.dora(*scoped("shell", "c", sleeper, "--", "wc", "-c"), input=b"x" * 300_000)
    assert (done.returncode, done.stdout.strip()) == (0, b"300000"), done.stderr
    done = env.dora(*scoped("shell", "c", sleeper, "--", "echo", "hi"))
    assert (done.returncode, done.stdout) == (0, b"hi\n")


def test_tty_resize_changes_the_terminal_size(env: ExecEnv, sleeper: str) -> None:
    from dora.client.exec import open_shell

    async def session() -> bytes:
        ws = await open_shell(
            env.api.url,
            f"Bearer {env.tokens['dev']}",
            False,
            sleeper,
            ["sh"],
            tty=True,
            **SCOPE,
        )
        output = bytearray()
        try:
            await ws.send(resize_frame(123, 45))
            await ws.send(frame(STDIN, b"busybox stty size; exit 7\n"))

            async def read() -> int:
                async for message in ws:
                    if isinstance(message, bytes):
                        output.extend(message[1:])
                    elif '"exit"' in message:
                        return int(message.split(":")[1].strip(" }"))
                raise AssertionError(f"no exit frame; output {bytes(output)!r}")

            assert await asyncio.wait_for(read(), timeout=15) == 7
        finally:
            await ws.close()
        return bytes(output)

    assert b"45 123" in asyncio.run(session())


def test_dora_shell_interactive_under_a_real_pty(env: ExecEnv, sleeper: str) -> None:
    """Type into `dora shell c NAME` on a pseudo-terminal and read the echo back."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        dora_argv(*scoped("shell", "c", sleeper)),
        env=env.cli_env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    try:
        seen = bytearray()
        read_until(master, b"#", seen=seen)  # busybox sh's root prompt
        os.write(master, b"echo ping-$((40+2)) $(busybox stty size)\r")
        read_until(master, b"ping-42 30 100", seen=seen)  # the window's size went through
        os.write(master, b"exit\r")
        assert proc.wait(timeout=20) == 0, bytes(seen)
        assert termios.tcgetattr(slave) == before, "the terminal was not restored"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)
        os.close(slave)


def test_shell_needs_a_running_container(env: ExecEnv) -> None:
    name = env.run_container(["sh", "-c", "echo bye"], wait="exited")
    with env.client() as dora:
        with pytest.raises(Conflict, match="running"):
            dora.exec(name, ["true"], **SCOPE)
        assert list(dora.logs(name, **SCOPE)) == ["bye"]  # logs of an exited one still work
    pending = create_container(env.api, f"{name}-pending", workspace=WORKSPACE)
    with Client(env.api.url, env.tokens["dev"]) as dora:
        with pytest.raises(Conflict, match="not placed"):
            dora.exec(pending.name, ["true"], **SCOPE)
        with pytest.raises(Conflict, match="not placed"):
            list(dora.logs(pending.name, **SCOPE))


def test_a_shell_command_never_reaches_the_api_log(env: ExecEnv, sleeper: str) -> None:
    # The argv travels in the WebSocket URL, which uvicorn logs when the socket opens.
    secret = unique("pw-s3cret")
    done = env.dora(*scoped("shell", "c", sleeper, "--", "echo", f"PASSWORD={secret}"))
    assert (done.returncode, done.stdout) == (0, f"PASSWORD={secret}\n".encode())
    wait_until(lambda: "cmd=[arg]" in env.api.log_text(), within=10, what="the shell's log line")
    assert secret not in env.api.log_text()
