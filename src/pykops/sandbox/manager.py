"""The sandbox: a local simulation of AWS that outlives the command that started it.

``pykops sandbox up`` starts the AWS emulator (:mod:`pykops.sandbox.aws_emulator`: moto with pykops'
fidelity fixes) as a detached background process bound to 127.0.0.1, seeds it (:mod:`pykops.sandbox.seed`)
and writes, in the sandbox directory (``$PYKOPS_SANDBOX_DIR`` or ``~/.pykops/sandbox``):

``env``
    shell lines that point the AWS SDKs, the AWS CLI and pykops at the emulator with fake credentials
    (``eval "$(pykops sandbox up)"`` or ``source <dir>/env``);
``aws-emulator.pid``
    the emulator's process id;
``sandbox.json``
    what ``status`` reports (pid, endpoint, region, state store);
``aws-emulator.log``
    the emulator's output;
``machines.pid``, ``machines.log``
    the machine simulator (:mod:`pykops.sandbox.machines`), a second background process: it boots the
    EC2 instances of every cluster as simulated machines (the real ``pykops nodeup --root``, real etcd
    members, a Kubernetes API emulator per cluster, simulated kubelets); its files are ``machines/``,
    ``volumes/`` (the etcd EBS volumes' data) and ``clusters/<name>/api.json`` (the loopback address the
    cluster's API endpoint maps to; ``export kubeconfig`` reads it).

No AWS account is used: nothing in the sandbox can reach AWS, and its data lives in the emulator's memory
(it is gone after ``down``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pykops.errors import PykopsError
from pykops.sandbox.aws_emulator import DEFAULT_HOST, DEFAULT_REGION, HEALTH_PATH, tail_file

SANDBOX_DIR_ENV = "PYKOPS_SANDBOX_DIR"
STATE_BUCKET = "pykops-sandbox-state"
EMULATOR_MODULE = "pykops.sandbox.aws_emulator"
MACHINES_MODULE = "pykops.sandbox.machines"
LABEL = "pykops sandbox (local simulation; no AWS account is used)"

PID_FILE = "aws-emulator.pid"
LOG_FILE = "aws-emulator.log"
READY_FILE = "aws-emulator.ready.json"
MACHINES_PID_FILE = "machines.pid"
MACHINES_LOG_FILE = "machines.log"
MACHINES_STATE_FILE = "machines.json"
# The simulator's data: gone with the emulator's memory at ``down``.
_SIMULATION_DIRS = ("machines", "volumes", "clusters")
DEFAULT_BOOT_DELAY = 3.0  # seconds from "running" in EC2 to a booted machine
_MACHINES_STOP_TIMEOUT = 30.0  # it stops every etcd member and API server first
ENV_FILE = "env"
STATE_FILE = "sandbox.json"
_LOCK_FILE = ".lock"

_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_KILL_TIMEOUT = 5.0

# Variables that could send requests past the emulator (to real AWS) or sign them with real credentials;
# the env file unsets them.
_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_AUTO_SCALING",
    "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
    "AWS_ENDPOINT_URL_ROUTE_53",
)

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Emulators this process started: kept so that their Popen objects are not collected while they run (which
# would warn) and so that ``down`` in the same process reaps them instead of leaving zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class SandboxError(PykopsError):
    """The sandbox could not be started, reached or stopped."""


def default_dir() -> Path:
    """``$PYKOPS_SANDBOX_DIR``, or ``~/.pykops/sandbox``."""
    configured = os.environ.get(SANDBOX_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".pykops" / "sandbox"


@dataclass(frozen=True)
class SandboxState:
    """A started sandbox, as recorded in ``sandbox.json``."""

    pid: int
    host: str
    port: int
    region: str
    state_store: str
    started_at: str

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Component:
    """One row of ``sandbox status``."""

    name: str
    status: str
    pid: int | None
    endpoint: str


# ---------------------------------------------------------------------------------------------------------
# Processes


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (no zombie left behind)."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie counts as exited)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) succeeded


def _command_line(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None  # Linux, and the process is gone
    except OSError:
        return None
    try:  # no /proc (macOS)
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, check=False)
    except OSError:
        return None
    return out.stdout.decode(errors="replace").strip() or None


def is_emulator(pid: int, marker: str = "", module: str = EMULATOR_MODULE) -> bool:
    """Whether ``pid`` is alive and runs ``module`` (by default the AWS emulator), not some other process that
    reused the pid.

    ``marker``: a string its command line must contain as well (a path of the sandbox's directory).
    """
    if not pid_alive(pid):
        return False
    command = _command_line(pid)
    return command is not None and module in command and marker in command


def healthy(endpoint_url: str, timeout: float = 2.0) -> bool:
    """Whether the emulator at ``endpoint_url`` answers its health check."""
    try:
        with _NO_PROXY.open(endpoint_url + HEALTH_PATH, timeout=timeout) as resp:
            return bool(json.loads(resp.read()).get("status") == "ok")
    except (OSError, ValueError):
        return False


def _await_health(endpoint_url: str, seconds: float) -> bool:
    """Whether the emulator answers its health check within ``seconds`` (it may be busy for a moment)."""
    deadline = time.monotonic() + seconds
    while not healthy(endpoint_url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _stop_pid(pid: int, timeout: float, what: str = "the AWS emulator") -> None:
    """SIGTERM ``pid``; SIGKILL if it is still there after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, _KILL_TIMEOUT)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    if pid_alive(pid):
        raise SandboxError(f"{what} (pid {pid}) did not stop, even after SIGKILL")


# ---------------------------------------------------------------------------------------------------------
# The sandbox


class Sandbox:
    """The sandbox in ``directory``; see the module docstring."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_dir()).expanduser().resolve()

    def path(self, name: str) -> Path:
        return self.directory / name

    # -- state ---------------------------------------------------------------------------------------------

    def recorded_pid(self) -> int | None:
        """The pid in ``aws-emulator.pid``, if any."""
        try:
            return int(self.path(PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def recorded_state(self) -> SandboxState | None:
        """``sandbox.json``, if a start completed."""
        try:
            raw = json.loads(self.path(STATE_FILE).read_text())
            return SandboxState(**raw)
        except (OSError, ValueError, TypeError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is the AWS emulator of this sandbox directory."""
        return is_emulator(pid, str(self.path(READY_FILE)))

    def _started(self) -> SandboxState | None:
        """The recorded state if its emulator process is alive (healthy or not)."""
        state = self.recorded_state()
        if state is None or state.pid != self.recorded_pid() or not self._is_ours(state.pid):
            return None
        return state

    def running(self) -> SandboxState | None:
        """The recorded state if its emulator is alive and answers; ``None`` otherwise."""
        state = self._started()
        return state if state is not None and healthy(state.endpoint_url) else None

    def env(self, state: SandboxState) -> dict[str, str]:
        """The environment that points AWS clients and pykops at the sandbox."""
        hosts = [h for h in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "").split(",") if h]
        no_proxy = ",".join(hosts if state.host in hosts else [*hosts, state.host])
        return {
            "AWS_ENDPOINT_URL": state.endpoint_url,
            "AWS_DEFAULT_REGION": state.region,
            "AWS_REGION": state.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "KOPS_STATE_STORE": state.state_store,
            SANDBOX_DIR_ENV: str(self.directory),
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def env_text(self, state: SandboxState) -> str:
        """``env``'s content: ``export`` lines (and one ``unset``) for ``eval`` or ``source``.

        For a running sandbox this is the env file written when it started (rewritten if it is missing).
        """
        try:
            text = self.path(ENV_FILE).read_text()
            if f"AWS_ENDPOINT_URL={state.endpoint_url}\n" in text:
                return text
        except OSError:
            pass
        text = self._env_text(state)
        with contextlib.suppress(OSError):
            self._write(ENV_FILE, text)
        return text

    def _env_text(self, state: SandboxState) -> str:
        lines = [f"# {LABEL}: {state.endpoint_url}"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.env(state).items()]
        lines.append("unset " + " ".join(_UNSET))
        return "\n".join(lines) + "\n"

    def log_tail(self, lines: int = 20) -> str:
        return tail_file(self.path(LOG_FILE), lines)

    # -- lifecycle -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per sandbox directory."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.path(_LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def up(
        self,
        port: int = 0,
        *,
        region: str = DEFAULT_REGION,
        progress: Callable[[str], None] = lambda message: None,
        machines: bool = True,
        boot_delay: float = DEFAULT_BOOT_DELAY,
    ) -> tuple[SandboxState, bool]:
        """Start, wait for and seed the emulator unless it runs, then the machine simulator (unless
        ``machines`` is false) unless it runs; return the state and whether the emulator started."""
        with self._locked():
            state = self._started()
            if state is not None:
                if _await_health(state.endpoint_url, 10.0):
                    if machines and self.machines_pid() is None:
                        self._start_machines(state, boot_delay, progress)
                    return state, False
                progress(f"The AWS emulator (pid {state.pid}) does not answer; restarting it")
            self._clear()
            if importlib.util.find_spec("moto") is None:
                raise SandboxError(
                    "the sandbox needs moto, which is not installed", hint="pip install 'pykops[test]'"
                )
            progress(f"Starting the AWS emulator (moto with pykops' fidelity fixes) in {self.directory}")
            pid = self._spawn(port)
            try:
                bound = self._wait_ready(pid)
                state = SandboxState(
                    pid=pid,
                    host=DEFAULT_HOST,
                    port=bound,
                    region=region,
                    state_store=f"s3://{STATE_BUCKET}",
                    started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                )
                progress(f"AWS emulator listening on {state.endpoint_url} (pid {pid})")
                from pykops.sandbox.seed import seed

                result = seed(state.endpoint_url, region, state_bucket=STATE_BUCKET)
                progress(
                    f"Seeded {len(result.images)} images ({', '.join(sorted(result.images))}), "
                    f"{len(result.policies)} AWS managed policies checked, "
                    f"state store {state.state_store} (versioned, encrypted)"
                )
                self._write(ENV_FILE, self._env_text(state))
                self._write(STATE_FILE, json.dumps(asdict(state), indent=2) + "\n")
                if machines:
                    self._start_machines(state, boot_delay, progress)
            except BaseException:
                with contextlib.suppress(SandboxError):
                    self._stop_machines()
                with contextlib.suppress(SandboxError):
                    _stop_pid(pid, _STOP_TIMEOUT)
                self._remove_files()
                raise
            return state, True

    def down(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Stop the emulator (SIGTERM; SIGKILL after ``timeout`` s); return its pid, ``None`` if none ran."""
        if not self.directory.is_dir():
            return None
        with self._locked():
            self._stop_machines()
            state = self.recorded_state()
            pid = self.recorded_pid() or (state.pid if state is not None else None)
            stopped = None
            if pid is not None and self._is_ours(pid):
                _stop_pid(pid, timeout)
                stopped = pid
            self._remove_files()
            return stopped

    def status(self) -> list[Component]:
        """The sandbox's components: the AWS emulator and the state store."""
        state = self.recorded_state()
        pid = self.recorded_pid()
        endpoint = state.endpoint_url if state is not None else "-"
        store = state.state_store if state is not None else f"s3://{STATE_BUCKET}"
        if pid is None:
            return [
                Component("aws-emulator", "stopped", None, "-"),
                Component("state-store", "-", None, store),
            ]
        if not self._is_ours(pid):
            return [
                Component("aws-emulator", "stopped (stale pid file)", None, endpoint),
                Component("state-store", "-", None, store),
            ]
        if state is None or state.pid != pid:
            return [
                Component("aws-emulator", "starting", pid, endpoint),
                Component("state-store", "-", None, store),
            ]
        if not healthy(state.endpoint_url):
            return [
                Component("aws-emulator", "unhealthy", pid, endpoint),
                Component("state-store", "-", None, store),
            ]
        return [
            Component("aws-emulator", "running", pid, endpoint),
            self._state_store(state),
            self._machines(),
        ]

    # -- the machine simulator -----------------------------------------------------------------------------

    def machines_pid(self) -> int | None:
        """The machine simulator's pid, if it runs for this sandbox directory."""
        try:
            pid = int(self.path(MACHINES_PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_emulator(pid, str(self.directory), MACHINES_MODULE) else None

    def machine_records(self) -> list[dict[str, object]]:
        """What the simulator last wrote to ``machines.json`` (one record per machine)."""
        try:
            raw = json.loads(self.path(MACHINES_STATE_FILE).read_text())
        except (OSError, ValueError):
            return []
        records = raw.get("machines", raw) if isinstance(raw, dict) else raw
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    def _machines(self) -> Component:
        pid = self.machines_pid()
        if pid is None:
            return Component("machines", "stopped", None, "-")
        records = self.machine_records()
        running = sum(1 for r in records if r.get("state") == "running")
        return Component("machines", "running", pid, f"{running}/{len(records)} simulated machines booted")

    def _start_machines(self, state: SandboxState, boot_delay: float, progress: Callable[[str], None]) -> int:
        """Start the machine simulator detached from us (as the emulator), in the sandbox's environment."""
        cmd = [
            sys.executable,
            "-m",
            MACHINES_MODULE,
            "--sandbox-dir",
            str(self.directory),
            "--boot-delay",
            str(boot_delay),
        ]
        env = {**os.environ, **self.env(state)}
        for name in _UNSET:
            env.pop(name, None)
        proc = self._detached(cmd, env, MACHINES_LOG_FILE, MACHINES_PID_FILE)
        time.sleep(0.3)
        if not pid_alive(proc.pid):
            raise SandboxError(
                f"the machine simulator exited at once; the end of {self.path(MACHINES_LOG_FILE)}:\n"
                f"{tail_file(self.path(MACHINES_LOG_FILE), 20)}"
            )
        progress(
            f"Machine simulator started (pid {proc.pid}): EC2 instances boot as simulated machines "
            f"{boot_delay:g}s after they run"
        )
        return proc.pid

    def _stop_machines(self) -> None:
        """Stop the simulator (it stops its etcd members and API servers) and forget the simulation's data."""
        pid = self.machines_pid()
        if pid is not None:
            _stop_pid(pid, _MACHINES_STOP_TIMEOUT, "the machine simulator")
        self.path(MACHINES_PID_FILE).unlink(missing_ok=True)
        self.path(MACHINES_STATE_FILE).unlink(missing_ok=True)
        for name in _SIMULATION_DIRS:
            shutil.rmtree(self.path(name), ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------------------

    def _state_store(self, state: SandboxState) -> Component:
        from botocore.exceptions import BotoCoreError, ClientError

        from pykops.sandbox.seed import client

        bucket = state.state_store.removeprefix("s3://")
        try:
            s3 = client("s3", state.endpoint_url, state.region)
            s3.head_bucket(Bucket=bucket)
            versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
            status = "ready" if versioning == "Enabled" else "ready (unversioned)"
        except ClientError:
            status = "missing"
        except BotoCoreError:
            status = "unreachable"
        return Component("state-store", status, None, state.state_store)

    def _spawn(self, port: int) -> int:
        """Start the emulator detached from us: own session, no stdin, output to the log file."""
        self.path(READY_FILE).unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            EMULATOR_MODULE,
            "--host",
            DEFAULT_HOST,
            "--port",
            str(port),
            "--ready-file",
            str(self.path(READY_FILE)),
        ]
        return self._detached(cmd, dict(os.environ), LOG_FILE, PID_FILE).pid

    def _detached(
        self, cmd: list[str], env: dict[str, str], log_file: str, pid_file: str
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` detached from us (own session, no stdin, output appended to ``log_file``) and record
        its pid in ``pid_file``."""
        with open(self.path(log_file), "ab") as log:
            started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            log.write(f"--- {started} {LABEL}: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**env, "PYTHONUNBUFFERED": "1"},
                cwd=self.directory,
                start_new_session=True,  # not in our process group: a Ctrl-C or a closed terminal spares it
            )
        _CHILDREN[proc.pid] = proc
        self._write(pid_file, f"{proc.pid}\n")
        return proc

    def _wait_ready(self, pid: int) -> int:
        """The emulator's port once it answers its health check."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        ready = self.path(READY_FILE)
        port: int | None = None
        while True:
            if not pid_alive(pid):
                raise SandboxError(
                    f"the AWS emulator exited before it was ready; the end of {self.path(LOG_FILE)}:\n"
                    f"{self.log_tail()}"
                )
            if port is None and ready.exists():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    port = int(json.loads(ready.read_text())["port"])
            if port is not None and healthy(f"http://{DEFAULT_HOST}:{port}", timeout=1.0):
                return port
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the AWS emulator did not answer within {_STARTUP_TIMEOUT:.0f}s; "
                    f"the end of {self.path(LOG_FILE)}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _clear(self) -> None:
        """Before a start: stop a recorded emulator of ours that does not answer, and forget stale files."""
        pid = self.recorded_pid()
        if pid is not None and self._is_ours(pid):
            _stop_pid(pid, _STOP_TIMEOUT)
        self._remove_files()

    def _remove_files(self) -> None:
        for name in (PID_FILE, STATE_FILE, ENV_FILE, READY_FILE):
            self.path(name).unlink(missing_ok=True)

    def _write(self, name: str, text: str) -> None:
        path = self.path(name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
