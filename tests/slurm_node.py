"""A real single-node Slurm (slurmctld + slurmd + munged) for the slow tests, everything under one temp dir.

The daemons read SLURM_CONF, munged its own key and socket (slurm.conf's AuthInfo), so nothing under /etc
or /run is used and nothing is left behind. Needs root (slurmd starts jobs as their user) and the Debian
packages slurm-wlm and munge, installed here with apt-get when missing."""
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port

PACKAGES = {"slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "munged": "munge"}
PARTITION = "debug"


class SlurmUnavailable(Exception):
    """Why this machine cannot run a test Slurm (the slow tests skip with it)."""


def install_if_missing() -> None:
    missing = sorted({pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and not root (apt-get needs root)")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and no apt-get here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, capture_output=True, env=env, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"apt-get install {' '.join(missing)} failed: {proc.stderr.strip()[-300:]}")


def node_line() -> str:
    """This machine as slurmd sees it (`slurmd -C`: NodeName=<host> CPUs=... RealMemory=<MiB>)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True, timeout=60).stdout
    return out.splitlines()[0].strip()


def slurm_conf(root: Path, node: str) -> str:
    host = node.split()[0].removeprefix("NodeName=")
    return "\n".join([
        "ClusterName=labtest",
        f"SlurmctldHost={host}(127.0.0.1)",  # no name lookup needed
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        f"AuthInfo=socket={root}/munge.socket",
        "SlurmUser=root",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log",
        # What works in a container without systemd or cgroup delegation.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "KillWait=20",
        f"{node} NodeAddr=127.0.0.1",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class SlurmNode:
    """start() brings the daemons up and waits for the node to be idle; stop() ends every job, then them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.daemons: list[subprocess.Popen] = []
        self.node = ""  # this machine's NodeName=... line in slurm.conf

    def start(self) -> "SlurmNode":
        if os.geteuid() != 0:
            raise SlurmUnavailable("a test Slurm needs root (slurmd runs the jobs)")
        install_if_missing()
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.node = node_line()
        self.conf.write_text(slurm_conf(self.root, self.node))
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.spawn(["munged", "-F", "--force", f"--key-file={key}", f"--socket={self.root}/munge.socket",
                    f"--pid-file={self.root}/munged.pid", f"--log-file={self.root}/munged.log",
                    f"--seed-file={self.root}/munged.seed"])
        self.wait_for(lambda: (self.root / "munge.socket").exists(), "munged's socket")
        self.spawn(["slurmctld", "-D", "-i"])
        self.wait_for(lambda: self.run("sinfo", "-h").returncode == 0, "slurmctld")
        self.spawn(["slurmd", "-D"])
        self.wait_for(lambda: self.run("sinfo", "-h", "-o", "%t").stdout.strip() == "idle", "an idle node")
        return self

    def spawn(self, command: list[str]) -> None:
        log = open(self.root / f"{command[0]}.out", "w")
        self.daemons.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def run(self, *command: str, env_extra=None, timeout: float = 30) -> subprocess.CompletedProcess:
        env = dict(self.env, **(env_extra or {}))
        return subprocess.run(list(command), capture_output=True, text=True, env=env, timeout=timeout)

    def wait_for(self, ready, what: str, timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for daemon in self.daemons:
                if daemon.poll() is not None:
                    raise RuntimeError(f"{daemon.args[0]} exited ({daemon.returncode}): {self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"no {what} after {timeout_s:.0f} s: {self.logs()}")

    def logs(self, tail: int = 600) -> str:
        return " | ".join(f"{p.name}: {p.read_text(errors='replace')[-tail:]}"
                          for p in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")))

    def cpus(self) -> int:
        return int(self.node.split("CPUs=")[1].split()[0])

    def job_ids(self) -> list[str]:
        out = self.run("squeue", "-h", "-o", "%A").stdout if self.daemons else ""
        return out.split()

    def stop(self) -> None:
        """scancel every job and wait for their processes to end (slurmstepd outlives slurmd), then stop
        slurmd, slurmctld and munged, in that order."""
        if self.job_ids():
            self.run("scancel", "--full", *self.job_ids())
            deadline = time.time() + 60
            while self.job_ids() and time.time() < deadline:
                time.sleep(1)
        for daemon in reversed(self.daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        self.daemons = []
