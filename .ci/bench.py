#!/usr/bin/env python3
"""Benchmark authd with its own load generator (`authload`) and print, or
write to `.ci/RESULTS.md` and README.md, the results and the sizing figures.

    python3 .ci/bench.py [--runs 3] [--duration 10] [--connections 64] [--connections-high 256]
                         [--stores postgres,sqlite] [--write] [--smoke]
    python3 .ci/bench.py --soak [--soak-minutes 3] [--stores postgres,sqlite]
    python3 .ci/bench.py --scale [--scale-sizes 1000000,5000000,20000000] [--idle-seconds 60] [--write]

For each store it starts a fresh release server (PostgreSQL: a new database
on 127.0.0.1:5432; SQLite: a temporary directory) with rate limits off and
the default (OWASP) argon2 parameters and runs every scenario `--runs`
times (figures are medians over the runs): health, authorize, refresh,
mixed, signin, signup at `--connections`, health, authorize, refresh at
`--connections-high`, and refresh during a sign-in storm; each run metered
for authd's CPU and, on PostgreSQL, the database's commits, WAL and CPU.
A second server with cheap hashing (labelled) makes sessions in authload's
setup and revokes them in the timed window (revoke alone), beside a refresh
run on the same server. On PostgreSQL, two instances on one database
measure the delay from an acknowledged revoke at one to the first 401 at
the other, under background load. Resident memory is read after all of it
and set against 64 MiB plus the session cache (`authd cache-footprint`).

`--write` (also spelt `--write-readme`) writes the full results into
`.ci/RESULTS.md` between `<!-- bench:start -->` and `<!-- bench:end -->`,
the sizing figures (PostgreSQL) between `<!-- sizing:start -->` and
`<!-- sizing:end -->`, and the headline figures into README.md between its
`<!-- bench:start -->` and `<!-- bench:end -->`.
With `--scale` (see `benchlib/scale.py`) it writes only the scale figures,
into `.ci/RESULTS.md` between `<!-- scale:start -->` and `<!-- scale:end -->`.

Figures are only comparable within one run on one machine: the load
generator shares the CPU with the server. `--smoke` runs every scenario
(the new ones included) for about a second with few connections and only
checks that nothing but the intended statuses came back (CI uses it; it
asserts no speed).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib.dbcost import Meter  # noqa: E402
from benchlib.proc import AUTHD, ROOT, Server, authload, cache_footprint, finish, psql  # noqa: E402
from benchlib.propagation import propagation  # noqa: E402
from benchlib.report import headline, table, write_between  # noqa: E402
from benchlib.scale import scale  # noqa: E402
from benchlib.sizing import section  # noqa: E402
from benchlib.soak import soak  # noqa: E402
from benchlib.stores import bench_store, revoke_vs_refresh  # noqa: E402

SMOKE_SCENARIOS = ["health", "authorize", "refresh", "mixed", "signin", "signup", "multi-tab", "replay"]


def startup_with_sessions(n=1_000_000):
    """Seconds from process start to a healthy /health with `n` live
    sessions already in a PostgreSQL database."""
    server = Server("postgres")  # creates and migrates the database
    server.proc.terminate()
    server.proc.wait(timeout=20)
    psql("INSERT INTO authd.users (id, email, password_hash) VALUES "
         "('00000000-0000-0000-0000-000000000001', 'bench@example.com', 'x');"
         "INSERT INTO authd.sessions (id, user_id, generation, issued_at_ms, expires_at_ms, created_at_ms) "
         "SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 0, "
         "(extract(epoch from now())*1000)::bigint, (extract(epoch from now())*1000)::bigint + 604800000, "
         f"(extract(epoch from now())*1000)::bigint FROM generate_series(1, {n});", server.db)
    from benchlib.proc import free_port, wait_healthy
    port = free_port()
    env = dict(server.env, AUTHD_BIND=f"127.0.0.1:{port}")
    started = time.time()
    proc = subprocess.Popen([AUTHD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        elapsed = time.time() - started
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.proc = proc
        server.stop()
    return elapsed


def smoke(args):
    """Every scenario briefly: the classic ones and revoke (a pool) on
    SQLite, the database meter and revoke-seen (two instances) on
    PostgreSQL. Only the intended statuses count; no speed is asserted."""
    failed = False

    def check(name, r, requests_key="requests"):
        nonlocal failed
        errors = sum(r.get("errors", {}).values())
        figure = f"{r['rps']:>9.0f} req/s" if "rps" in r else f"{r.get(requests_key, 0):>9} samples"
        print(f"smoke {name:12} {figure} errors={errors}")
        failed |= bool(errors) or not r.get(requests_key)

    server = Server("sqlite", cheap=True)
    try:
        for scenario in SMOKE_SCENARIOS:
            check(scenario, authload(server.base, scenario, 4, 1, 0.5))
        r = authload(server.base, "revoke", 4, 1, 0.5, ["--pool", "20000"])
        check("revoke", r)
        mixed = authload(server.base, "mixed", 4, 1, 0.5)
        ops = mixed.get("endpoints", {})
        failed |= not ({"refresh", "authorize"} <= set(ops))
    finally:
        server.stop()
    first = Server("postgres", cheap=True)
    second = Server("postgres", db=first.db, cheap=True)
    try:
        load = authload(second.base, "refresh", 4, 3, 0, background=True)
        meter = Meter(first.db, first)
        meter.start()
        seen = authload([first.base, second.base], "revoke-seen", 2, 1, 0.3, ["--pool", "2000"])
        cost = meter.stop()
        check("revoke-seen", seen, "samples")
        failed |= seen["never_seen"] > 0 or "commits_per_s" not in cost
        print(f"smoke revoke-seen p50 {seen['p50_ms']:.2f} ms p99 {seen['p99_ms']:.2f} ms; "
              f"meter {cost['commits_per_s']:.0f} commits/s")
        check("refresh (bg)", finish(load, "refresh"))
    finally:
        second.stop(drop=False)
        first.stop()
    return 1 if failed else 0


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=None, help="runs per figure (median); default 3 "
                   "with --write, else 1")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--connections-high", type=int, default=256)
    p.add_argument("--stores", default="postgres,sqlite")
    p.add_argument("--seen-pool", type=int, default=3000,
                   help="sessions the revoke-seen probes make in setup, per run")
    p.add_argument("--write", "--write-readme", dest="write_readme", action="store_true",
                   help="write the results to .ci/RESULTS.md and the headline figures to README.md")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--no-startup", action="store_true", help="skip the 1M-session start-up figure")
    p.add_argument("--soak", action="store_true",
                   help="minutes of mixed load without scraping /metrics; report the memory slope")
    p.add_argument("--soak-minutes", type=float, default=3)
    p.add_argument("--scale", action="store_true",
                   help="per-instance cost on databases of many stored sessions (made with SQL), "
                   "each beside an empty one; with --write, into .ci/RESULTS.md")
    p.add_argument("--scale-sizes", default="1000000,5000000,20000000")
    p.add_argument("--idle-seconds", type=int, default=60)
    p.add_argument("--redo-revoke", action="store_true",
                   help="with --from-json: measure revoke alone again (each store), save, render")
    p.add_argument("--from-json", metavar="FILE",
                   help="render (and with --write write) a saved run instead of measuring")
    args = p.parse_args()
    if args.runs is None:
        args.runs = 3 if args.write_readme else 1
    if args.from_json:
        saved = json.load(open(args.from_json))
        for key in ("runs", "duration", "warmup", "connections", "connections_high"):
            setattr(args, key, saved["args"][key])
        if args.redo_revoke:
            for store, result in saved["results"].items():
                result["revoke_pair"] = revoke_vs_refresh(store, args)
            with open(args.from_json, "w") as f:
                json.dump(saved, f, indent=1, default=str)
        return render(saved["results"], saved["extra"], args)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    if args.smoke:
        sys.exit(smoke(args))
    if args.soak:
        soak(args)
        return
    if args.scale:
        scale(args)
        return
    before = loadavg()
    results = {}
    peak = before
    for store in args.stores.split(","):
        results[store] = bench_store(store, args)
        with open(os.path.join(tempfile.gettempdir(), f"authd-bench-{store}.json"), "w") as f:
            json.dump(results[store], f, indent=1, default=str)
        peak = max(peak, loadavg())
    extra = {"cache": cache_footprint()}
    if "postgres" in results:
        extra["propagation"] = propagation(args)
        peak = max(peak, loadavg())
        if not args.no_startup:
            extra["startup_1m_s"] = startup_with_sessions()
    extra["load"] = (before, loadavg(), peak)
    path = os.path.join(tempfile.gettempdir(), "authd-bench.json")
    with open(path, "w") as f:
        json.dump({"results": results, "extra": extra, "args": vars(args)}, f, indent=1, default=str)
    print(f"raw results in {path} (render again with --from-json)", file=sys.stderr)
    render(results, extra, args)


RESULTS = os.path.join(ROOT, ".ci", "RESULTS.md")
README = os.path.join(ROOT, "README.md")


def render(results, extra, args):
    text = table(results, args, extra)
    print(text)
    sizing = section(results["postgres"], args, extra) if "postgres" in results else None
    if sizing:
        print()
        print(sizing)
    if args.write_readme:
        written = [(RESULTS, "bench", text), (README, "bench", headline(results, args, extra))]
        if sizing:
            written.append((RESULTS, "sizing", sizing))
        for path, marker, body in written:
            ok = write_between(marker, body, path)
            name = os.path.relpath(path, ROOT)
            print(f"{name}: {marker} figures written" if ok else
                  f"{name} lacks the <!-- {marker}:start/end --> markers; not written", file=sys.stderr)


if __name__ == "__main__":
    main()
