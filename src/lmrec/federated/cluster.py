"""One Ray cluster for many simulations: its start-up (Ray's daemons, 10-20 s on a busy machine) is
paid once instead of once per :func:`lmrec.federated.simulate`.

Flower's Ray backend passes ``backend_config["init_args"]`` to ``ray.init``; with
``FedMFConfig.ray_address`` set, those are ``{"address": ...}``, so each simulation connects to the
running cluster, and the ``ray.shutdown()`` Flower calls at its end only disconnects. The cluster
is a ``ray start --head --block`` child process on a free port (never Ray's default, so it cannot
collide with another cluster on the machine); stopping it terminates that process, which takes
its daemons down with it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ray_cluster(cpus: int = 2, *, timeout: float = 180.0) -> Iterator[str]:
    """Start a local Ray head with ``cpus`` CPUs; yield its address; stop it on exit."""
    import ray

    exe = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    # its own temp dir: `ray start` writes the head's address to <temp dir>/ray_current_cluster, and
    # in the default /tmp/ray every plain `ray.init()` on the machine (another Flower simulation,
    # say) would connect to this cluster instead of starting its own, and fail
    temp = tempfile.mkdtemp(prefix="lmrec-ray-")
    command = [exe, "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0"]
    command += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", "--block"]
    head = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:  # ready when a driver can connect
            if head.poll() is not None:
                raise RuntimeError(f"ray start --head --port={port} exited with code {head.returncode}")
            try:
                ray.init(address=address, log_to_driver=False)
                break
            except (ConnectionError, RuntimeError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray head on {address} not ready after {timeout:.0f} s") from None
                time.sleep(1.0)
        ray.shutdown()
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        default = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):  # never leave a stale address where plain ray.init() looks
            if default.read_text().strip().endswith(f":{port}"):
                default.unlink()
        shutil.rmtree(temp, ignore_errors=True)
