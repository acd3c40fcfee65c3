"""The scenarios of one store, each run `--runs` times (median per figure):
on a server with the default argon2 cost, health / authorize / refresh /
mixed / signin / signup at `--connections`, health / authorize / refresh at
`--connections-high`, each metered for its database and authd CPU cost
(`dbcost`), and refresh during a sign-in storm. Then, on a fresh server with cheap hashing per
run (labelled), refresh and revoke alone, the revoked sessions made in
authload's setup before the timed window. Resident memory is read after
all of it, with the number of cached sessions."""

import sys
import time
from collections import defaultdict

from .dbcost import Meter
from .proc import Server, authload, finish, hash_cost, wait_setup
from .runs import median_dict, median_of

LOW = ["health", "authorize", "refresh", "mixed", "signin", "signup"]
HIGH = ["health", "authorize", "refresh"]


def log(store, name, r):
    errs = sum(r.get("errors", {}).values())
    print(f"  {store:8} {name:14} {r['rps']:>9.0f} req/s  p99 {r['p99_ms']:.2f} ms  errors {errs}",
          file=sys.stderr)


def metered(server, scenario, connections, args, extra=()):
    """An authload run with the database cost meter over its steady middle
    (from just after the warm-up, which starts when authload's setup is
    done, to just before the window closes)."""
    load = authload(server.base, scenario, connections, args.duration, args.warmup, extra,
                    background=True)
    meter = Meter(server.db, server, load.pid)
    wait_setup(load)
    time.sleep(args.warmup + 0.3)
    meter.start()
    time.sleep(max(args.duration - 0.8, 0.5))
    cost = meter.stop()
    r = finish(load, scenario)
    cost["rps"] = r["rps"]
    k = r["rps"] / 1000 or 1e-9
    cost["authd_cores_per_1k"] = cost["authd_cores"] / k
    # Microseconds of CPU per request, by whom (and of idle CPU).
    for who in ("authd", "pg", "load", "idle"):
        if f"{who}_cores" in cost:
            cost[f"{who}_us_per_request"] = cost[f"{who}_cores"] / k * 1000
    if "commits_per_s" in cost:
        cost["commits_per_1k"] = cost["commits_per_s"] / k
        cost["wal_bytes_per_1k"] = cost["wal_bytes_per_s"] / k
        cost["pg_cores_per_1k"] = cost["pg_cores"] / k
    return r, cost


def pool_size(refresh_rps, args):
    """Sessions to make for a revoke run: 1.6x what revoking at the refresh
    rate would use in warm-up and window."""
    return int(max(refresh_rps, 10000) * (args.warmup + args.duration) * 1.6)


def bench_store(store, args):
    server = Server(store)
    out = {"idle_rss_mib": server.rss_mib(), "hash_label": server.hash_label}
    runs, costs = defaultdict(list), defaultdict(list)
    low, high = args.connections, args.connections_high
    try:
        for i in range(args.runs):
            for scenario in LOW:
                key = scenario
                if scenario == "signin":
                    runs["hash"].append(hash_cost(server.env))
                r, cost = metered(server, scenario, low, args)
                costs[key].append(cost)
                runs[key].append(r)
                log(store, f"{key} #{i + 1}", r)
            for scenario in HIGH:
                key = f"{scenario}_{high}"
                r, cost = metered(server, scenario, high, args)
                costs[key].append(cost)
                runs[key].append(r)
                log(store, f"{key} #{i + 1}", r)
            # Refresh measured while another client saturates sign-in hashing.
            storm = authload(server.base, "signin", low, args.duration + args.warmup + 2, 0,
                             background=True)
            wait_setup(storm)
            r = authload(server.base, "refresh", low, args.duration, args.warmup)
            runs["refresh_storm"].append(r)
            runs["storm_signin"].append(finish(storm, "signin"))
            log(store, f"storm #{i + 1}", r)
        for key, results in runs.items():
            out[key] = median_dict(results) if key == "hash" else median_of(results)
        for key, meters in costs.items():
            out[f"cost_{key}"] = median_dict(meters)
        out["revoke_pair"] = revoke_vs_refresh(store, args)
        # After everything this store ran: this server's memory, then its cache.
        out["final_rss_mib"] = server.rss_mib()
        out["cached_sessions"] = server.metric("authd_token_cache_sessions") or 0
        if server.db:
            out["session_row_bytes"] = session_row_bytes(server.db)
    finally:
        server.stop()
    return out


def revoke_vs_refresh(store, args):
    """Refresh, then revoke alone, in each run, on a fresh server with
    cheap hashing (so the revoked sessions can be made in seconds in
    setup). Fresh for each run: on a server that has just revoked a few
    hundred thousand sessions, refresh was measured up to 25x slower (the
    issue's write path; see the README), which would skew the next run's
    reference."""
    runs = defaultdict(list)
    last = {}
    for i in range(args.runs):
        server = Server(store, cheap=True)
        try:
            r = authload(server.base, "refresh", args.connections, args.duration, args.warmup)
            runs["refresh"].append(r)
            log(store, f"cheap refresh #{i + 1}", r)
            pool = pool_size(r["rps"], args)
            for _ in range(3):
                r = authload(server.base, "revoke", args.connections, args.duration, args.warmup,
                             ["--pool", str(pool)])
                if not r.get("pool", {}).get("exhausted_connections"):
                    break
                # A connection that ran out stopped early: measure again with more.
                print(f"  the revoke pool of {pool} ran out; again with {pool * 2}", file=sys.stderr)
                pool *= 2
            runs["revoke"].append(r)
            log(store, f"revoke #{i + 1}", r)
            last = {"rss_mib": server.rss_mib(),
                    "cached_sessions": server.metric("authd_token_cache_sessions") or 0}
        finally:
            server.stop()
    out = {key: median_of(results) for key, results in runs.items()}
    out.update(last)
    out["hash_label"] = server.hash_label
    out["ratios"] = [rv["rps"] / rf["rps"] for rf, rv in zip(runs["refresh"], runs["revoke"])]
    return out


def session_row_bytes(db):
    """PostgreSQL bytes per session row (table, indexes and TOAST together)."""
    from .proc import psql
    row = psql("SELECT pg_total_relation_size('authd.sessions'), count(*) FROM authd.sessions", db)
    size, count = (int(x) for x in row.split("|"))
    return {"bytes": size, "rows": count, "per_row": size / max(count, 1)}
