#!/usr/bin/env python3
"""Benchmark authd with its own load generator (`authload`) and print, or
write into README.md, a table of the results.

    python3 .ci/bench.py [--duration 10] [--connections 64] [--stores postgres,sqlite]
                         [--write-readme] [--smoke]
    python3 .ci/bench.py --soak [--soak-minutes 3] [--stores postgres,sqlite]

For each store it starts a fresh release server (PostgreSQL: a new database
on 127.0.0.1:5432; SQLite: a temporary directory) with rate limits off and
the default (OWASP) argon2 parameters, then runs every scenario of
`authload` in turn against it, plus a "storm" run (refresh measured while a
second `authload` saturates sign-in hashing). It also records idle resident
memory, the hash-bound sign-in limit (`authd hash-cost`: hashing threads
divided by one hash's time, measured in the same run) and the error counts.

Figures are only comparable within one run on one machine: the load
generator shares the CPU with the server. `--smoke` runs every scenario for
two seconds at eight connections and only checks that nothing but the
intended statuses came back (CI uses it; it asserts no speed).
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = ["health", "authorize", "refresh", "revoke", "mixed", "signin", "signup"]
SECRET = "benchmark-secret-benchmark-secret-0123456789"


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


class Server:
    def __init__(self, store, extra_env=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="authd-bench-")
        env = dict(os.environ)
        env.update(
            {
                "AUTHD_BIND": f"127.0.0.1:{self.port}",
                "SECRET_KEY": SECRET,
                "AUTHD_RATE_LIMIT_ENABLED": "false",
                "AUTHD_LOG_LEVEL": "warn",
                # No load balancer to wait for when the bench stops a server.
                "AUTHD_SHUTDOWN_DELAY_MS": "0",
            }
        )
        if store == "postgres":
            self.db = "authd_bench_" + uuid.uuid4().hex[:12]
            env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{self.db}"
        else:
            self.db = None
            env["DATABASE_URL"] = f"sqlite://{self.tmp}/authd.db"
        env.update(extra_env or {})
        self.env = env
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "target/release/authd")], env=env, stdout=self.log, stderr=self.log
        )
        wait_healthy(self.base)
        time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.db:
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {self.db}"],
                capture_output=True,
            )


def authload(base, scenario, connections, duration, warmup, background=False):
    cmd = [
        os.path.join(ROOT, "target/release/authload"),
        "--url", base, "--scenario", scenario,
        "--connections", str(connections),
        "--duration", f"{duration}s", "--warmup", f"{warmup}s", "--json",
    ]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    return parse(out.stdout, scenario, out.returncode, out.stderr)


def parse(stdout, scenario, code, stderr=""):
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"authload {scenario} failed ({code}): {stderr[-2000:]}")
    return json.loads(lines[-1])


def hash_cost(env):
    out = subprocess.run(
        [os.path.join(ROOT, "target/release/authd"), "hash-cost", "--rounds", "40"],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cache_footprint():
    out = subprocess.run(
        [os.path.join(ROOT, "target/release/authd"), "cache-footprint", "--sessions", "1000000"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup_with_sessions(n=1_000_000):
    """Seconds from process start to a healthy /health with `n` live
    sessions already in a PostgreSQL database."""
    server = Server("postgres")  # creates and migrates the database
    db, env = server.db, server.env
    server.proc.terminate()
    server.proc.wait(timeout=20)
    sql = (
        "INSERT INTO authd.users (id, email, password_hash) VALUES "
        "('00000000-0000-0000-0000-000000000001', 'bench@example.com', 'x');"
        "INSERT INTO authd.sessions (id, user_id, generation, issued_at_ms, expires_at_ms, created_at_ms) "
        "SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 0, "
        "(extract(epoch from now())*1000)::bigint, (extract(epoch from now())*1000)::bigint + 604800000, "
        f"(extract(epoch from now())*1000)::bigint FROM generate_series(1, {n});"
    )
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qc", sql], check=True,
                   capture_output=True)
    port = free_port()
    env = dict(env, AUTHD_BIND=f"127.0.0.1:{port}", AUTHD_SHUTDOWN_DELAY_MS="0")
    started = time.time()
    proc = subprocess.Popen([os.path.join(ROOT, "target/release/authd")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        elapsed = time.time() - started
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.proc = proc
        server.stop()
    return elapsed


def bench_store(store, args):
    server = Server(store)
    results = {"idle_rss_mib": rss_kib(server.proc.pid) / 1024}
    try:
        for scenario in SCENARIOS:
            if scenario == "signin":
                # The hash-bound limit, measured right before the sign-ins.
                results["hash"] = hash_cost(server.env)
            results[scenario] = authload(server.base, scenario, args.connections, args.duration, args.warmup)
            print(f"  {store:8} {scenario:9} {results[scenario]['rps']:>10.0f} req/s  "
                  f"p99 {results[scenario]['p99_ms']:.2f} ms  errors {results[scenario]['errors']}",
                  file=sys.stderr)
        # The HTTP ceiling again at the end: on a shared machine one reading
        # can be low; the ratios use the better of the two.
        again = authload(server.base, "health", args.connections, args.duration, args.warmup)
        if again["rps"] > results["health"]["rps"]:
            results["health"] = again
        # Sign-in storm: refresh measured while another client saturates hashing.
        storm = authload(server.base, "signin", args.connections, args.duration + args.warmup + 2, 0,
                         background=True)
        time.sleep(1)
        results["refresh_storm"] = authload(server.base, "refresh", args.connections, args.duration, args.warmup)
        out, _ = storm.communicate()
        results["storm_signin"] = parse(out, "signin", storm.returncode)
        results["loaded_rss_mib"] = rss_kib(server.proc.pid) / 1024
    finally:
        server.stop()
    return results


def soak(args):
    """Minutes of mixed load with nothing scraping /metrics, resident memory
    sampled every few seconds; reports the slope (least squares, after the
    first minute's warm-up) in MiB per minute, per store."""
    seconds = int(args.soak_minutes * 60)
    warm = min(60, seconds // 3)
    results = {}
    for store in args.stores.split(","):
        # Cheap hashing so the sign-ins of the mixed loop do not dominate;
        # labelled as such in the output.
        server = Server(store, {"AUTHD_ARGON2_M_KIB": "1024", "AUTHD_ARGON2_T": "1"})
        idle = rss_kib(server.proc.pid) / 1024
        loads = [
            authload(server.base, "refresh", 24, seconds, 0, background=True),
            authload(server.base, "authorize", 16, seconds, 0, background=True),
            authload(server.base, "mixed", 8, seconds, 0, background=True),
        ]
        samples = []
        started = time.time()
        try:
            while time.time() - started < seconds:
                time.sleep(5)
                samples.append((time.time() - started, rss_kib(server.proc.pid) / 1024))
            outs = [p.communicate()[0] for p in loads]
        finally:
            server.stop()
        runs = [parse(o, "soak", 0) for o in outs]
        tail = [(t, m) for t, m in samples if t >= warm] or samples
        n = len(tail)
        mt = sum(t for t, _ in tail) / n
        mm = sum(m for _, m in tail) / n
        var = sum((t - mt) ** 2 for t, _ in tail) or 1e-9
        slope = sum((t - mt) * (m - mm) for t, m in tail) / var * 60
        requests = sum(r["requests"] for r in runs)
        errors = sum(sum(r["errors"].values()) for r in runs)
        results[store] = dict(idle=idle, start=tail[0][1], end=tail[-1][1], peak=max(m for _, m in samples),
                              slope=slope, requests=requests, errors=errors, rps=requests / seconds)
        print(f"soak {store:8} idle {idle:.1f} MiB, after warm-up {tail[0][1]:.1f} -> {tail[-1][1]:.1f} MiB "
              f"(peak {results[store]['peak']:.1f}), slope {slope:+.3f} MiB/min over {seconds - warm} s; "
              f"{requests} requests ({requests / seconds:.0f}/s: refresh 24 + authorize 16 + mixed 8 "
              f"connections, argon2 m=1024 t=1), errors {errors}, no /metrics scrape")
        last = [m for t, m in samples if t >= seconds - 60]
        results[store]["last_minute_mib"] = (last[-1] - last[0]) if len(last) > 1 else 0.0
        print(f"  change over the last minute: {results[store]['last_minute_mib']:+.2f} MiB")
        print("  samples (s, MiB): " + ", ".join(f"{t:.0f}:{m:.1f}" for t, m in samples))
    return results


def smoke(args):
    """Every scenario briefly, against SQLite: only the intended statuses."""
    server = Server("sqlite", {"AUTHD_ARGON2_M_KIB": "1024", "AUTHD_ARGON2_T": "1"})
    failed = False
    try:
        for scenario in SCENARIOS:
            r = authload(server.base, scenario, 8, 2, 1)
            print(f"smoke {scenario:9} {r['rps']:>9.0f} req/s errors={r['errors']}")
            failed |= bool(r["errors"]) or r["requests"] == 0
    finally:
        server.stop()
    return 1 if failed else 0


def table(all_results, args, extra):
    lines = []
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    lines.append(
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), {platform.system()} "
        f"{platform.release()}; server, PostgreSQL and load generator on the same machine; "
        f"{args.connections} keep-alive connections, {args.warmup} s warm-up + {args.duration} s per "
        f"scenario; release build, rate limits off, default settings otherwise (argon2id m=19456 t=2 p=1, "
        f"batch_max_size 512, batch_max_wait_us 0)."
    )
    lines.append("")
    stores = list(all_results)
    header = "| scenario | " + " | ".join(f"{s} req/s | {s} p50 / p99 / p99.9 ms | {s} errors" for s in stores) + " |"
    lines.append(header)
    lines.append("|" + " --- |" * (1 + 3 * len(stores)))
    for scenario in SCENARIOS + ["refresh_storm"]:
        row = [scenario.replace("_storm", " during sign-in storm")]
        for s in stores:
            r = all_results[s][scenario]
            errs = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "0"
            row += [f"{r['rps']:.0f}", f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['p999_ms']:.2f}", errs]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("| ratio / figure | " + " | ".join(stores) + " |")
    lines.append("| --- |" + " --- |" * len(stores))

    def ratio_row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(all_results[s]) for s in stores) + " |")

    ratio_row("refresh / health throughput", lambda r: f"{r['refresh']['rps'] / r['health']['rps']:.0%}")
    ratio_row("revoke / health throughput", lambda r: f"{r['revoke']['rps'] / r['health']['rps']:.0%}")
    ratio_row("authorize / health throughput", lambda r: f"{r['authorize']['rps'] / r['health']['rps']:.0%}")
    ratio_row("one argon2 hash (ms), hashing threads",
              lambda r: f"{r['hash']['hash_ms']:.1f}, {r['hash']['hash_threads']}")
    ratio_row("signin / hash-bound limit",
              lambda r: f"{r['signin']['rps']:.0f} / {r['hash']['hash_bound_per_s']:.0f} = "
                        f"{r['signin']['rps'] / r['hash']['hash_bound_per_s']:.0%}")
    ratio_row("signup / hash-bound limit",
              lambda r: f"{r['signup']['rps']:.0f} / {r['hash']['hash_bound_per_s']:.0f} = "
                        f"{r['signup']['rps'] / r['hash']['hash_bound_per_s']:.0%}")
    ratio_row("refresh p99 during storm / without",
              lambda r: f"{r['refresh_storm']['p99_ms']:.2f} / {r['refresh']['p99_ms']:.2f} ms = "
                        f"{r['refresh_storm']['p99_ms'] / max(r['refresh']['p99_ms'], 1e-9):.1f}x")
    ratio_row("idle / loaded resident memory (MiB)",
              lambda r: f"{r['idle_rss_mib']:.1f} / {r['loaded_rss_mib']:.1f}")
    lines.append("")
    cache = extra["cache"]
    lines.append(
        f"Session cache: {cache['bytes_per_session']:.0f} bytes per session with "
        f"{cache['sessions']:,} sessions (`authd cache-footprint`; entry {cache['entry_size']} bytes)."
    )
    if "startup_1m_s" in extra:
        lines.append(
            f"Start-up with 1,000,000 live sessions in PostgreSQL: {extra['startup_1m_s']:.2f} s to a "
            f"healthy `/health` (sessions are read through on first use, not loaded at start)."
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--stores", default="postgres,sqlite")
    p.add_argument("--write-readme", action="store_true")
    p.add_argument("--marker", default="bench",
                   help="README section to rewrite: between <!-- MARKER:start --> and <!-- MARKER:end -->")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--soak", action="store_true",
                   help="minutes of mixed load without scraping /metrics; report the memory slope")
    p.add_argument("--soak-minutes", type=float, default=3)
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    if args.smoke:
        sys.exit(smoke(args))
    if args.soak:
        soak(args)
        return
    results = {s: bench_store(s, args) for s in args.stores.split(",")}
    extra = {"cache": cache_footprint()}
    if "postgres" in results:
        extra["startup_1m_s"] = startup_with_sessions()
    text = table(results, args, extra)
    print(text)
    with open(os.path.join(tempfile.gettempdir(), "authd-bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    if args.write_readme:
        path = os.path.join(ROOT, "README.md")
        readme = open(path).read()
        start, end = f"<!-- {args.marker}:start -->", f"<!-- {args.marker}:end -->"
        if start in readme and end in readme:
            before, rest = readme.split(start, 1)
            _, after = rest.split(end, 1)
            readme = before + start + "\n" + text + "\n" + end + after
            open(path, "w").write(readme)
            print("README.md updated", file=sys.stderr)
        else:
            print("README.md has no bench markers; not written", file=sys.stderr)


if __name__ == "__main__":
    main()
