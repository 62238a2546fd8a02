"""The servers a scenario compares: rill, nginx (plain or with its Lua
module), Node and programs built from source (Native). A scenario lists
configurations; the harness starts each on a free port of 127.0.0.1, pinned
to procs.CPU_SERVER, and hands the Running server to the scenario's measure().

Relative paths in a configuration are relative to the scenario's directory.
Arguments, environment values and nginx files may hold @NAME@ fields, filled
in from run.vars (which a scenario's setup() may add to: a certificate, an
upstream's port) and @PORT@, the server's own port.
"""
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import procs

ROOT = Path(__file__).resolve().parents[2]
LIB = Path(__file__).resolve().parent


class Server:
    """One peer configuration: a label for the tables, the file that
    configures it, and an optional footnote shown under the table."""

    def __init__(self, path, label, note=None, tls=False, env=None, cpus=None):
        self.path, self.label, self.note, self.tls = Path(path), label, note, tls
        self.env = env or {}
        self.cpus = cpus  # a taskset CPU list ("0,1") instead of procs.CPU_SERVER

    def resolve(self, scenario_dir):
        self.path = scenario_dir / self.path

    def argv(self, port, run, workdir):
        """The command that serves on 127.0.0.1:port."""
        raise NotImplementedError

    def memory_pid(self, pid):
        """The process whose memory is reported (the one serving requests)."""
        return pid

    def start(self, run, cpu=None):
        """Starts the server (on cpu) and waits until it accepts connections."""
        if cpu is None:
            cpu = self.cpus if self.cpus is not None else procs.CPU_SERVER
        port = procs.free_port()
        workdir = run.rundir / f"{self.label}-{port}"
        workdir.mkdir()
        log = workdir / "server.log"
        env = None
        if self.env:
            env = dict(os.environ, **{k: run.fill(v, PORT=port) for k, v in self.env.items()})
        with open(log, "w") as logf:
            proc = procs.spawn(self.argv(port, run, workdir), cpu, cwd=ROOT, env=env,
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
        self.scheme = "https" if server.tls else "http"
        self.pid = server.memory_pid(proc.pid)

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

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
    """`rill serve APP` with one worker; args are added to the command line
    (`--tls-cert`, limits) and env to its environment (UPSTREAM=...)."""

    def __init__(self, app, label="rill", note=None, args=(), env=None, tls=False, cpus=None):
        super().__init__(app, label, note, tls=tls, env=env, cpus=cpus)
        self.args = list(args)

    def argv(self, port, run, workdir):
        return [run.rill_bin, "serve", str(self.path), "--workers", "1",
                "--listen", f"127.0.0.1:{port}", *(run.fill(a, PORT=port) for a in self.args)]


class Nginx(Server):
    """nginx with one worker process. The configuration file holds the
    http-level directives and server blocks; @PORT@ and @DIR@ (a directory
    of its own) are filled in, and lib/nginx.conf.in wraps it in the main
    context. lua=True loads the Lua module (libnginx-mod-http-lua)."""

    MODULES = "/usr/lib/nginx/modules"

    def __init__(self, conf, label="nginx", lua=False, note=None, tls=False, processes=1,
                 cpus=None):
        super().__init__(conf, label, note, tls=tls, cpus=cpus)
        self.lua = lua
        self.processes = processes

    def argv(self, port, run, workdir):
        # The worker runs as an unprivileged user and writes body temp files here.
        for d in (run.rundir, workdir):
            d.chmod(0o755)
        modules = ""
        if self.lua:
            modules = "".join(f"load_module {self.MODULES}/{m}.so;\n"
                              for m in ("ndk_http_module", "ngx_http_lua_module"))
        http = run.fill(self.path.read_text(), PORT=port, DIR=workdir)
        conf = (LIB / "nginx.conf.in").read_text()
        for key, value in (("@MODULES@", modules), ("@NOFILE@", str(run.nofile)),
                           ("@WORKERS@", str(self.processes)),
                           ("@HTTP@", http), ("@DIR@", str(workdir))):
            conf = conf.replace(key, value)
        (workdir / "nginx.conf").write_text(conf)
        return ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf")]

    def memory_pid(self, pid):
        # The master listens before it forks the worker: wait for the worker.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            workers = procs.children(pid)
            if len(workers) == self.processes:
                return workers[0]
            time.sleep(0.02)
        raise RuntimeError(f"nginx master {pid} has {len(workers)} workers, "
                           f"expected {self.processes}")


class Node(Server):
    """`node SCRIPT PORT`; the script listens on 127.0.0.1:PORT. Packages
    from npm (bench/run installs them) are found in bench/node_modules."""

    def __init__(self, script, label="node", note=None, args=(), cpus=None, tls=False):
        super().__init__(script, label, note, tls=tls, cpus=cpus)
        self.args = [str(a) for a in args]

    def argv(self, port, run, workdir):
        return ["node", str(self.path), str(port), *(run.fill(a, PORT=port) for a in self.args)]


class Bun(Server):
    """`bun SCRIPT PORT` with the Bun that bench/run installs from npm into
    bench/node_modules; the script calls Bun.serve on 127.0.0.1:PORT."""

    BIN = ROOT / "bench" / "node_modules" / ".bin" / "bun"

    def __init__(self, script, label="bun", note=None, args=(), cpus=None):
        super().__init__(script, label, note, cpus=cpus)
        self.args = [str(a) for a in args]

    def argv(self, port, run, workdir):
        return [str(self.BIN), str(self.path), str(port), *self.args]


class Native(Server):
    """A server built from one source file, run as `PROGRAM PORT [ARGS]`: compile
    is the compiler's command line, with @SRC@ and @OUT@ for the source and
    the program. The program is kept in bench/.build/ under a name that
    holds a hash of the source and the command, so it is built once."""

    BUILD = ROOT / "bench" / ".build"

    def __init__(self, source, label, compile, note=None, args=()):
        super().__init__(source, label, note)
        self.compile = list(compile)
        self.args = list(args)

    def program(self):
        digest = hashlib.sha256(self.path.read_bytes() + repr(self.compile).encode())
        out = self.BUILD / f"{self.path.stem}-{digest.hexdigest()[:12]}"
        if not out.exists():
            self.BUILD.mkdir(exist_ok=True)
            print(f"bench: building {self.path.relative_to(ROOT)}", file=sys.stderr, flush=True)
            tmp = out.with_suffix(".tmp")
            argv = [str(self.path) if a == "@SRC@" else str(tmp) if a == "@OUT@" else a
                    for a in self.compile]
            subprocess.run(argv, check=True)
            os.replace(tmp, out)
        return out

    def argv(self, port, run, workdir):
        return [str(self.program()), str(port), *(run.fill(a, PORT=port) for a in self.args)]
