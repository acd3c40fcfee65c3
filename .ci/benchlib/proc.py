"""Processes the bench starts: an authd release server on a fresh database
(or on an existing one, for a second instance), `authload` runs (in the
foreground or the background) and the `authd` helper commands."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "benchmark-secret-benchmark-secret-0123456789"
AUTHD = os.path.join(ROOT, "target/release/authd")
AUTHLOAD = os.path.join(ROOT, "target/release/authload")
PG = "postgres://postgres@127.0.0.1:5432/"
# The cheapest argon2id the settings accept: for servers whose only job is
# to make sessions quickly (labelled as such wherever a figure comes from one).
CHEAP_HASH = {"AUTHD_ARGON2_M_KIB": "8", "AUTHD_ARGON2_T": "1"}
CHEAP_LABEL = "argon2id m=8 KiB t=1 (cheap, only to make sessions)"
DEFAULT_LABEL = "argon2id m=19456 KiB t=2 p=1 (default)"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_healthy(base, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError("authd did not become healthy")


def psql(sql, db="postgres"):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atqc", sql],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Server:
    """A release authd. `store` is "postgres" or "sqlite"; `db` reuses an
    existing PostgreSQL database (a second instance); `cheap` hashes with
    CHEAP_HASH."""

    def __init__(self, store, extra_env=None, db=None, cheap=False):
        self.store = store
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="authd-bench-")
        self.owns_db = False
        self.hash_label = CHEAP_LABEL if cheap else DEFAULT_LABEL
        env = dict(os.environ)
        env.update({
            "AUTHD_BIND": f"127.0.0.1:{self.port}",
            "SECRET_KEY": SECRET,
            "AUTHD_RATE_LIMIT_ENABLED": "false",
            "AUTHD_LOG_LEVEL": "warn",
            # No load balancer to wait for when the bench stops a server.
            "AUTHD_SHUTDOWN_DELAY_MS": "0",
        })
        if store == "postgres":
            self.owns_db = db is None
            self.db = db or "authd_bench_" + uuid.uuid4().hex[:12]
            env["DATABASE_URL"] = PG + self.db
        else:
            self.db = None
            env["DATABASE_URL"] = f"sqlite://{self.tmp}/authd.db"
        if cheap:
            env.update(CHEAP_HASH)
        env.update(extra_env or {})
        self.env = env
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.proc = subprocess.Popen([AUTHD], env=env, stdout=self.log, stderr=self.log)
        wait_healthy(self.base)
        time.sleep(0.5)

    def rss_mib(self):
        return rss_kib(self.proc.pid) / 1024

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def metric(self, name):
        """One unlabelled gauge or counter from /metrics (None if absent)."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self, drop=True):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.db and self.owns_db and drop:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                            f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"], capture_output=True)


def authload_cmd(urls, scenario, connections, duration, warmup, extra=()):
    if isinstance(urls, str):
        urls = [urls]
    cmd = [AUTHLOAD]
    for url in urls:
        cmd += ["--url", url]
    cmd += ["--scenario", scenario, "--connections", str(connections),
            "--duration", f"{round(duration * 1000)}ms", "--warmup", f"{round(warmup * 1000)}ms", "--json", "--quiet"]
    return cmd + list(extra)


def authload(urls, scenario, connections, duration, warmup, extra=(), background=False):
    cmd = authload_cmd(urls, scenario, connections, duration, warmup, extra)
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    return parse(out.stdout, scenario, out.returncode, out.stderr)


def parse(stdout, scenario, code, stderr=""):
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"authload {scenario} failed ({code}): {stderr[-2000:]}")
    return json.loads(lines[-1])


def wait_setup(background):
    """Blocks until a background authload has made its users and sessions
    (its "setup done" line on stderr): its warm-up starts then."""
    for line in background.stderr:
        if "setup done" in line:
            return
    raise RuntimeError("authload ended before its setup was done")


def finish(background, scenario):
    out, _ = background.communicate()
    return parse(out, scenario, background.returncode)


def hash_cost(env):
    out = subprocess.run([AUTHD, "hash-cost", "--rounds", "40"], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cache_footprint():
    out = subprocess.run([AUTHD, "cache-footprint", "--sessions", "1000000"], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
