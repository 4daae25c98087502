"""Starting real local servers for benchmarks: a free port, a process, a health check."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(
    command: list[str], health_url: str, log: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends; `RuntimeError` with its log if it does not come up.

    It inherits this process's environment unless given its own `env`. It runs in a process group
    of its own, and the whole group is stopped at the end: a wrapper (`strace`, a launcher that
    forks) cannot leave the server itself behind."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            env=dict(os.environ) if env is None else env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(health_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group `process` leads, SIGKILL what is left after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)  # in case it was frozen
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # members may outlive the leader by a moment
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def llama_server_command(model_path: Path, alias: str, port: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server for one GGUF, on 127.0.0.1."""
    import sys

    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
    ]  # fmt: skip


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
