"""`bench.py --scale`: what one instance costs as stored sessions pile up.

For each size (stored sessions, made with SQL: users of 100 sessions each,
none in use) a fresh PostgreSQL database is filled, and a fresh empty one
is measured beside it in the same run, with the same steps:

- refresh and authorize throughput of one instance (authload, its own
  sessions; cheap hashing, only to make them);
- the catch-up read's time, from authd's own histogram
  (`authd_change_feed_catch_up_duration_seconds`), during the refresh run
  (reads that find changes) and while idle;
- the PostgreSQL CPU an idle instance costs over `--idle-seconds` (user +
  system time of that database's backends only);
- a second instance's start-up time (process start to a healthy /health)
  and its resident memory;
- the HOT share of `sessions` updates (`n_tup_hot_upd / n_tup_upd`) over
  the refresh run.

The figures are printed as a markdown block, and with `--write` written
into `.ci/RESULTS.md` between its `<!-- scale:start -->` and
`<!-- scale:end -->` lines.
"""

import os
import subprocess
import sys
import time

from .proc import ROOT, Server, authload, free_port, psql, rss_kib, wait_healthy, AUTHD
from .report import write_between

SESSIONS_PER_USER = 100


def fill(db, sessions):
    users = max(1, sessions // SESSIONS_PER_USER)
    started = time.time()
    psql("SET synchronous_commit = off;"
         "INSERT INTO authd.users (id, email, password_hash) "
         f"SELECT md5('scale' || g)::uuid, 'scale' || g || '@example.com', 'x' "
         f"FROM generate_series(1, {users}) AS g;"
         "INSERT INTO authd.sessions (id, user_id, generation, issued_at_ms, expires_at_ms, "
         "created_at_ms, user_int_id) "
         "SELECT gen_random_uuid(), md5('scale' || (1 + g % " + str(users) + "))::uuid, 0, "
         "t, t + 604800000, t, 0 FROM generate_series(1, " + str(sessions) + ") AS g, "
         "(SELECT (extract(epoch FROM now()) * 1000)::bigint AS t) AS now;"
         "ANALYZE authd.sessions; ANALYZE authd.users;", db)
    return time.time() - started


def backend_ticks(db):
    ticks = 0
    for pid in psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}' "
                    "AND pid <> pg_backend_pid()").split():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks


def catch_up(server):
    return (server.metric("authd_change_feed_catch_up_duration_seconds_sum") or 0.0,
            server.metric("authd_change_feed_catch_up_duration_seconds_count") or 0.0)


def mean_ms(before, after):
    reads = after[1] - before[1]
    return (after[0] - before[0]) / reads * 1000 if reads else None, int(reads)


def hot(db):
    row = psql("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
               "WHERE schemaname = 'authd' AND relname = 'sessions'", db)
    upd, hot_upd = (int(x) for x in row.split("|"))
    return upd, hot_upd


def startup(server):
    port = free_port()
    env = dict(server.env, AUTHD_BIND=f"127.0.0.1:{port}")
    started = time.time()
    proc = subprocess.Popen([AUTHD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        elapsed = time.time() - started
        rss = rss_kib(proc.pid) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return elapsed, rss


def measure(sessions, args):
    server = Server("postgres", cheap=True)
    out = {"stored": sessions}
    try:
        if sessions:
            out["fill_s"] = fill(server.db, sessions)
        time.sleep(2)
        upd0 = hot(server.db)
        c0 = catch_up(server)
        r = authload(server.base, "refresh", args.connections, args.duration, args.warmup)
        c1 = catch_up(server)
        upd1 = hot(server.db)
        out["refresh_rps"] = r["rps"]
        out["refresh_p99_ms"] = r.get("p99_ms")
        out["catch_up_load_ms"], out["catch_up_load_reads"] = mean_ms(c0, c1)
        updates = upd1[0] - upd0[0]
        out["hot_share"] = (upd1[1] - upd0[1]) / updates if updates else None
        a = authload(server.base, "authorize", args.connections, args.duration, args.warmup)
        out["authorize_rps"] = a["rps"]
        time.sleep(3)
        c2 = catch_up(server)
        t0, ticks0 = time.time(), backend_ticks(server.db)
        time.sleep(args.idle_seconds)
        ticks1, t1 = backend_ticks(server.db), time.time()
        c3 = catch_up(server)
        out["idle_pg_core_pct"] = (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / (t1 - t0) * 100
        out["catch_up_idle_ms"], out["catch_up_idle_reads"] = mean_ms(c2, c3)
        out["startup_s"], out["startup_rss_mib"] = startup(server)
        out["rss_mib"] = server.rss_mib()
    finally:
        server.stop()
    return out


def hot_before_after(args):
    """The HOT share of the rotation statement of the branch before the
    change log (an UPDATE alone) and of this one (the UPDATE and the log
    entry in one statement), on one database, by SQL: 100 batches of 100
    rotations of 10,000 sessions, twice each, alternating (the mean)."""
    server = Server("postgres", cheap=True)
    try:
        fill(server.db, 10_000)
        psql("SELECT pg_stat_reset()", server.db)
        time.sleep(1)
        res = {}
        statements = (
            ("update alone", "UPDATE authd.sessions s SET generation = s.generation + 1, "
             "issued_at_ms = s.issued_at_ms + 1, updated_at_ms = s.issued_at_ms + 1 "
             "FROM (SELECT id FROM authd.sessions ORDER BY random() LIMIT 100) v WHERE s.id = v.id"),
            ("update + change-log entry", "WITH changed AS (UPDATE authd.sessions s "
             "SET generation = s.generation + 1, issued_at_ms = s.issued_at_ms + 1, "
             "updated_at_ms = s.issued_at_ms + 1 "
             "FROM (SELECT id FROM authd.sessions ORDER BY random() LIMIT 100) v WHERE s.id = v.id "
             "RETURNING s.id, s.generation, s.issued_at_ms) "
             "INSERT INTO authd.session_changes (ids, generations, issued, revoked) "
             "SELECT array_agg(id), array_agg(generation), array_agg(issued_at_ms), "
             "array_agg(false) FROM changed"),
        )
        for label, _ in statements:
            res[label] = []
        # Twice each, alternating, each batch its own transaction.
        for _ in range(2):
            for label, statement in statements:
                before = hot(server.db)
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", server.db,
                                "-qf", "-"], input=";\n".join([statement] * 100) + ";\n",
                               capture_output=True, text=True, check=True)
                time.sleep(1.5)
                after = hot(server.db)
                res[label].append((after[1] - before[1]) / max(1, after[0] - before[0]))
        return {label: sum(v) / len(v) for label, v in res.items()}
    finally:
        server.stop()


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def report(pairs, hot_res, args):
    lines = [f"Measured {time.strftime('%Y-%m-%d')} with "
             f"`python3 .ci/bench.py --scale --scale-sizes {args.scale_sizes}` on this machine "
             f"({os.cpu_count()} cores, shared); refresh and authorize at {args.connections} "
             f"connections for {args.duration} s after {args.warmup} s of warm-up; idle cost over "
             f"{args.idle_seconds} s. Stored sessions are made with SQL ({SESSIONS_PER_USER} per "
             "user, none in use); each database is measured beside an empty one in the same run.",
             "",
             "| stored sessions | refresh req/s (× empty) | authorize req/s (× empty) | catch-up read, "
             "under load / idle (ms) | idle instance: PostgreSQL CPU (% of a core) | start-up (s) | "
             "RSS after start-up (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for empty, full in pairs:
        for row in (empty, full):
            rel_r = row["refresh_rps"] / empty["refresh_rps"] if row is full else 1.0
            rel_a = row["authorize_rps"] / empty["authorize_rps"] if row is full else 1.0
            lines.append(
                f"| {row['stored']:,} | {row['refresh_rps']:,.0f} ({rel_r:.2f}) | "
                f"{row['authorize_rps']:,.0f} ({rel_a:.2f}) | "
                f"{fmt(row['catch_up_load_ms'], '.2f')} / {fmt(row['catch_up_idle_ms'], '.2f')} | "
                f"{row['idle_pg_core_pct']:.2f} | {row['startup_s']:.2f} | "
                f"{row['startup_rss_mib']:.0f} |")
    lines.append("")
    if hot_res:
        lines.append("HOT share of `sessions` updates (`n_tup_hot_upd / n_tup_upd`), rotations by "
                     "SQL on one database: " + "; ".join(
                         f"{k}: {v:.3f}" for k, v in hot_res.items()) + ". Over the refresh runs "
                     "above: " + ", ".join(
                         f"{row['stored']:,}: {fmt(row['hot_share'], '.3f')}"
                         for pair in pairs for row in pair) + ".")
    return "\n".join(lines) + "\n"


def scale(args):
    sizes = [int(s) for s in args.scale_sizes.split(",")]
    hot_res = hot_before_after(args)
    pairs = []
    for n in sizes:
        empty = measure(0, args)
        full = measure(n, args)
        print(empty, full, flush=True)
        pairs.append((empty, full))
    text = report(pairs, hot_res, args)
    print(text)
    if args.write_readme:
        ok = write_between("scale", text.rstrip("\n"), os.path.join(ROOT, ".ci", "RESULTS.md"))
        print(".ci/RESULTS.md: scale figures written" if ok else
              ".ci/RESULTS.md lacks the <!-- scale:start/end --> markers; not written",
              file=sys.stderr)
