"""Start and stop a real uvicorn server process on loopback for tests and benchmarks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``uvicorn --factory lmrec.serving.app:create_app_from_env`` (or the ``lmrec serve`` CLI)
    bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        artifact: Path,
        db: Path,
        *,
        api_key: str,
        config: dict[str, Any] | None = None,
        use_cli: bool = False,
        cli_args: list[str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self._metrics_dir: str | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            LMREC_ARTIFACT=str(artifact),
            LMREC_DB=str(db),
            LMREC_API_KEY=api_key,
            LMREC_SERVE_CONFIG=json.dumps(config or {}),
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
        )
        if use_cli:
            cmd = [
                sys.executable,
                "-c",
                "from lmrec.cli import main; main()",
                "serve",
                str(artifact),
                "--db",
                str(db),
            ]
            cmd += ["--port", str(self.port), "--log-level", "warning", *(cli_args or [])]
        else:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "lmrec.serving.app:create_app_from_env"]
            cmd += [
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            workers = int((config or {}).get("workers", 1))
            if workers > 1:  # what `lmrec serve --workers` does (lmrec.serving.server)
                cmd += ["--workers", str(workers)]
                self._metrics_dir = tempfile.mkdtemp(prefix="lmrec-metrics-")
                env["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        self._log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO))

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before it was ready")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server on {self.url} not ready after {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush (the crash case)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
