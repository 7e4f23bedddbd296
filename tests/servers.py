"""A real OpenAI-compatible judge endpoint for tests: `transformers serve` on the SmolLM2 weights.

`transformers serve` (transformers' CLI, `transformers[serving]`) is pure Python, so it runs on
every CPU (the compiled llama-cpp-python server died with a general protection fault on an Intel
Sapphire Rapids machine) and needs no native build. It serves the default model's safetensors
conversion cache under the name `smollm2-135m`: the server is pinned to the name it was started
with, so it is started from a private directory holding a link of that name to the cache.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from introspection_bench.models import convert_gguf, default_gguf_path

#: The model name the server answers to (requests naming another model get HTTP 400).
SERVED_MODEL = "smollm2-135m"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JudgeServer:
    """`transformers serve` of SmolLM2-135M-Instruct (fp32, CPU) on a fixed loopback port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.workdir = workdir
        self.log = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the server and wait until `GET /v1/models` answers (fails the test otherwise)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        link = self.workdir / SERVED_MODEL
        if not link.exists():
            link.symlink_to(convert_gguf(default_gguf_path()), target_is_directory=True)
        command = [
            str(Path(sys.executable).with_name("transformers")),
            "serve",
            SERVED_MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--default-seed",
            "0",
        ]
        # USE_HUB_KERNELS=0: without it transformers 5.2x refuses to load a model when the `kernels`
        # package is absent (the Makefile leaves it out).
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "USE_HUB_KERNELS": "0"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"judge server exited with {self.process.returncode}: {self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        pytest.fail(f"judge server not ready after {timeout_s} s: {self._tail()}")

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
