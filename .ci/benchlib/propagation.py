"""Revocation seen by another instance: two authd instances on one
PostgreSQL database, background refresh and authorize load on both, and
`authload --scenario revoke-seen` revoking at the first and polling the
second until it answers 401 (`--runs` times; the delays of each run are
reported, and their medians). Both instances hash cheaply (labelled): the
probe's sessions are made in its setup, and nothing measured here hashes."""

import sys
import time

from .proc import Server, authload, finish, wait_setup
from .runs import median_dict


def propagation(args, refresh_conns=24, authorize_conns=16, probes=4):
    first = Server("postgres", cheap=True)
    second = Server("postgres", db=first.db, cheap=True)
    runs, loads = [], []
    try:
        for i in range(args.runs):
            span = args.duration + args.warmup + 4
            background = []
            for server in (first, second):
                background.append(("refresh", authload(server.base, "refresh", refresh_conns, span, 0,
                                                       background=True)))
                background.append(("authorize", authload(server.base, "authorize", authorize_conns,
                                                         span, 0, background=True)))
            for _, p in background:
                wait_setup(p)
            time.sleep(1)
            seen = authload([first.base, second.base], "revoke-seen", probes, args.duration,
                            args.warmup, ["--pool", str(args.seen_pool)])
            done = [(name, finish(p, name)) for name, p in background]
            load = {"refresh_rps": sum(r["rps"] for n, r in done if n == "refresh"),
                    "authorize_rps": sum(r["rps"] for n, r in done if n == "authorize"),
                    "errors": sum(sum(r["errors"].values()) for _, r in done)}
            runs.append(seen)
            loads.append(load)
            print(f"  revoke-seen #{i + 1}: {seen['samples']} samples, p50 {seen['p50_ms']:.2f} "
                  f"p99 {seen['p99_ms']:.2f} max {seen['max_ms']:.2f} ms, never seen "
                  f"{seen['never_seen']}; background {load['refresh_rps']:.0f} refresh/s + "
                  f"{load['authorize_rps']:.0f} authorize/s (whole span), errors {load['errors']}",
                  file=sys.stderr)
    finally:
        second.stop(drop=False)
        first.stop()
    keys = ("samples", "p50_ms", "p99_ms", "max_ms", "never_seen", "stale_accepts")
    out = median_dict([{k: r[k] for k in keys} for r in runs])
    out["worst_max_ms"] = max(r["max_ms"] for r in runs)
    out["never_seen_total"] = sum(r["never_seen"] for r in runs)
    out["errors"] = sum(sum(r["errors"].values()) for r in runs)
    out["load"] = median_dict([{k: v for k, v in l.items()} for l in loads])
    out["runs"] = runs
    out["hash_label"] = first.hash_label
    out["setup"] = (f"2 instances on one PostgreSQL database; background per instance: refresh "
                    f"{refresh_conns} + authorize {authorize_conns} connections; {probes} probe "
                    f"connections")
    return out
