"""The servers a scenario compares: rill, nginx (plain or with its Lua
module) and Node. A scenario lists configurations (Rill, Nginx, Node); the
harness starts each on a free port of 127.0.0.1, pinned to procs.CPU_SERVER,
and hands the Running server to the scenario's measure().

Relative paths in a configuration are relative to the scenario's directory.
"""
import subprocess
import time
from pathlib import Path

import procs

ROOT = Path(__file__).resolve().parents[2]
LIB = Path(__file__).resolve().parent


class Server:
    """One peer configuration: a label for the tables, the file that
    configures it, and an optional footnote shown under the table."""

    def __init__(self, path, label, note=None):
        self.path, self.label, self.note = Path(path), label, note

    def resolve(self, scenario_dir):
        self.path = scenario_dir / self.path

    def argv(self, port, run, workdir):
        """The command that serves on 127.0.0.1:port."""
        raise NotImplementedError

    def memory_pid(self, pid):
        """The process whose memory is reported (the one serving requests)."""
        return pid

    def start(self, run):
        """Starts the server and waits until it accepts connections."""
        port = procs.free_port()
        workdir = run.rundir / f"{self.label}-{port}"
        workdir.mkdir()
        log = workdir / "server.log"
        with open(log, "w") as logf:
            proc = procs.spawn(self.argv(port, run, workdir), procs.CPU_SERVER, cwd=ROOT,
                               stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        try:
            procs.wait_for_port(port, proc)
            return Running(self, proc, port)
        except RuntimeError as e:
            procs.stop(proc)
            raise RuntimeError(f"{self.label} did not start: {e}\n{log.read_text()[-2000:]}")


class Running:
    """A started server: its port, its processes' CPU time and memory."""

    def __init__(self, server, proc, port):
        self.label, self.proc, self.port = server.label, proc, port
        self.pid = server.memory_pid(proc.pid)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self):
        """CPU seconds used so far by all the server's processes."""
        pids = [self.proc.pid, *procs.children(self.proc.pid)]
        return sum(procs.cpu_seconds(p) for p in pids)

    def rss(self):
        return procs.memory(self.pid)[0]

    def peak_rss(self):
        return procs.memory(self.pid)[1]

    def reset_peak_rss(self):
        procs.reset_peak_memory(self.pid)

    def stop(self):
        procs.stop(self.proc)


class Rill(Server):
    """`rill serve APP` with one worker."""

    def __init__(self, app, label="rill", note=None):
        super().__init__(app, label, note)

    def argv(self, port, run, workdir):
        return [run.rill_bin, "serve", str(self.path), "--workers", "1",
                "--listen", f"127.0.0.1:{port}"]


class Nginx(Server):
    """nginx with one worker process. The configuration file holds the
    http-level directives and server blocks; @PORT@ and @DIR@ (a directory
    of its own) are filled in, and lib/nginx.conf.in wraps it in the main
    context. lua=True loads the Lua module (libnginx-mod-http-lua)."""

    MODULES = "/usr/lib/nginx/modules"

    def __init__(self, conf, label="nginx", lua=False, note=None):
        super().__init__(conf, label, note)
        self.lua = lua

    def argv(self, port, run, workdir):
        # The worker runs as an unprivileged user and writes body temp files here.
        for d in (run.rundir, workdir):
            d.chmod(0o755)
        modules = ""
        if self.lua:
            modules = "".join(f"load_module {self.MODULES}/{m}.so;\n"
                              for m in ("ndk_http_module", "ngx_http_lua_module"))
        http = self.path.read_text().replace("@PORT@", str(port))
        conf = (LIB / "nginx.conf.in").read_text()
        for key, value in (("@MODULES@", modules), ("@NOFILE@", str(run.nofile)),
                           ("@HTTP@", http), ("@DIR@", str(workdir))):
            conf = conf.replace(key, value)
        (workdir / "nginx.conf").write_text(conf)
        return ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf")]

    def memory_pid(self, pid):
        # The master listens before it forks the worker: wait for the worker.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            workers = procs.children(pid)
            if len(workers) == 1:
                return workers[0]
            time.sleep(0.02)
        raise RuntimeError(f"nginx master {pid} has {len(workers)} workers, expected 1")


class Node(Server):
    """`node SCRIPT PORT`; the script listens on 127.0.0.1:PORT."""

    def __init__(self, script, label="node", note=None):
        super().__init__(script, label, note)

    def argv(self, port, run, workdir):
        return ["node", str(self.path), str(port)]
