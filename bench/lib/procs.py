"""Child processes of a benchmark run, and what /proc says about them.

Every process the harness starts goes through spawn(), which records it so
that stop_all() can end it however the run ends (error, Ctrl-C, SIGTERM).
Servers run on CPU_SERVER and load generators on CPU_CLIENT, so figures are
per core: the first two CPUs this process may use (the same one if it may
use only one).
"""
import os
import signal
import socket
import subprocess
import time

_cpus = sorted(os.sched_getaffinity(0))
CPU_SERVER = _cpus[0]
CPU_CLIENT = _cpus[1] if len(_cpus) > 1 else _cpus[0]
CLK_TCK = os.sysconf("SC_CLK_TCK")

_running = []


def spawn(argv, cpu, **popen_args):
    """Starts argv pinned to one CPU, in its own process group; returns the Popen."""
    p = subprocess.Popen(["taskset", "-c", str(cpu), *argv], start_new_session=True,
                         **popen_args)
    _running.append(p)
    return p


def stop(p, timeout=10):
    """Ends p's process group: SIGTERM, then SIGKILL after timeout seconds."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        except ProcessLookupError:
            pass
    if p in _running:
        _running.remove(p)


def stop_all():
    for p in list(_running):
        stop(p, timeout=3)


def wait_usage(p):
    """Waits for p to exit (its pipes must have been read); returns its
    exit code and the CPU seconds it used (user + system)."""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    _running.remove(p)
    return p.returncode, usage.ru_utime + usage.ru_stime


def cpu_seconds(pid):
    """User + system CPU seconds of a process, all its threads included
    (/proc/PID/stat fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces; fields after it are plain.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid):
    """PIDs whose parent is pid."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return kids


def memory(pid):
    """(VmRSS, VmHWM) of a process in bytes: resident now, and its peak."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def reset_peak_memory(pid):
    """Resets the process's VmHWM to its current RSS (Linux >= 4.0)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def wait_for_port(port, proc, timeout=10):
    """Waits until 127.0.0.1:port accepts connections; raises if proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def free_port():
    """A TCP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
