"""Start, watch and stop the pipeline's services as separate processes.

Used by ``gtx-stream demo`` and by the process tests: each service is ``python -m gtx_stream
<command>`` with the pipeline's config file, its output in a log file of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Service:
    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Supervisor:
    """A set of service processes sharing one config file and one log folder."""

    config: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)

    def start(self, name: str, *command: str) -> Service:
        """Start ``gtx-stream <command...> --config <config>`` as service ``name``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        args = [sys.executable, "-m", "gtx_stream", *command, "--config", str(self.config)]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        svc = Service(name, args, log_path, proc)
        self.services[name] = svc
        return svc

    def kill(self, name: str) -> None:
        """SIGKILL, like a crash: no clean-up of any kind."""
        svc = self.services[name]
        if svc.running and svc.process is not None:
            svc.process.kill()
            svc.process.wait()

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        svc = self.services[name]
        proc = svc.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self, timeout: float = 10.0) -> dict[str, int | None]:
        for svc in self.services.values():
            if svc.running and svc.process is not None:
                svc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {}
        for name, svc in self.services.items():
            if svc.process is None:
                continue
            try:
                svc.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.process.kill()
                svc.process.wait()
            codes[name] = svc.process.returncode
        return codes

    def failed(self) -> list[Service]:
        """Services that exited with a non-zero status."""
        return [s for s in self.services.values() if s.returncode not in (None, 0)]

    def raise_if_failed(self) -> None:
        """RuntimeError naming the first service that exited with a non-zero status, with the
        end of its log."""
        failed = self.failed()
        if failed:
            svc = failed[0]
            raise RuntimeError(f"service {svc.name} exited with status {svc.returncode}; "
                               f"its log ({svc.log_path}) ends:\n{svc.tail()}")  # fmt: skip
