"""The sizing figures of `.ci/RESULTS.md` (between `<!-- sizing:start -->`
and `<!-- sizing:end -->`), in the form of Keycloak's sizing guide: per vCPU of
this machine, the database's cost per 1,000 refreshes/s, memory per
million live sessions, and an example fleet. Every figure is computed from
the PostgreSQL results of the same bench run; measured figures and
extrapolations are in separate tables, each row labelled."""

import math
import os

from .report import machine


def per_core(rps, cores):
    return rps / cores if cores > 0 else float("nan")


def section(pg, args, extra, target_signins=500, target_refreshes=50_000):
    cores = os.cpu_count() or 1
    cost = {k[5:]: v for k, v in pg.items() if k.startswith("cost_")}
    low, high = args.connections, f"refresh_{args.connections_high}"
    signin, refresh, authorize = cost["signin"], cost["refresh"], cost["authorize"]
    refresh_hi = cost.get(high, refresh)
    hash_ms, threads = pg["hash"]["hash_ms"], pg["hash"]["hash_threads"]
    cache = extra["cache"]["bytes_per_session"]
    row = pg.get("session_row_bytes", {})
    lines = ["Sizing figures from the same run as the table above (PostgreSQL). " + machine(args, extra["load"]), ""]
    lines.append("**Measured** (per vCPU = requests per second of authd's own CPU time, "
                 "`/proc/<pid>/stat`, during the steady part of the window; the load generator and "
                 "PostgreSQL ran on the same 2 vCPUs and are not counted in it):")
    lines.append("")
    lines.append("| figure | value | from |")
    lines.append("| --- | --- | --- |")
    s_vcpu = per_core(signin["rps"], signin["authd_cores"])
    r_vcpu = per_core(refresh["rps"], refresh["authd_cores"])
    a_vcpu = per_core(authorize["rps"], authorize["authd_cores"])
    lines += [
        f"| sign-ins/s per vCPU, default argon2id (m=19456 t=2) | {s_vcpu:.0f} "
        f"(one hash {hash_ms:.1f} ms: {1000 / hash_ms:.0f}/s per hashing thread; {threads:.0f} "
        f"hashing thread(s) here) | signin, {low} connections: {signin['rps']:.0f}/s on "
        f"{signin['authd_cores']:.2f} authd cores |",
        f"| refreshes/s per vCPU | {r_vcpu:.0f} | refresh, {low} connections: {refresh['rps']:.0f}/s on "
        f"{refresh['authd_cores']:.2f} authd cores |",
        f"| refreshes/s per vCPU at {args.connections_high} connections | "
        f"{per_core(refresh_hi['rps'], refresh_hi['authd_cores']):.0f} | {refresh_hi['rps']:.0f}/s on "
        f"{refresh_hi['authd_cores']:.2f} authd cores |",
        f"| authorizes/s per vCPU | {a_vcpu:.0f} | authorize, {low} connections: "
        f"{authorize['rps']:.0f}/s on {authorize['authd_cores']:.2f} authd cores |",
        f"| whole machine, everything on {cores} vCPUs | sign-in {signin['rps'] / cores:.0f}, refresh "
        f"{refresh['rps'] / cores:.0f}, authorize {authorize['rps'] / cores:.0f} per vCPU | "
        f"throughput ÷ {cores} (authd + PostgreSQL + load generator) |",
    ]
    for name, c in [(f"{low} connections", refresh), (f"{args.connections_high} connections", refresh_hi)]:
        lines.append(
            f"| PostgreSQL per 1,000 refreshes/s ({name}) | {c['commits_per_1k']:.0f} commits/s, "
            f"{c['wal_bytes_per_1k'] / 1024:.0f} KiB/s WAL, {c['pg_cores_per_1k']:.3f} cores | "
            f"{c['commits_per_s']:.0f} commits/s, {c['wal_bytes_per_s'] / 2 ** 20:.1f} MiB/s WAL, "
            f"{c['pg_cores']:.2f} cores at {c['rps']:.0f} refreshes/s; other databases "
            f"{c.get('other_commits_per_s', 0):.0f} commits/s meanwhile |")
    lines.append(
        f"| PostgreSQL per sign-in | {signin['commits_per_1k'] / 1000:.2f} commits, "
        f"{signin['wal_bytes_per_1k'] / 1000:.0f} B WAL, {signin['pg_cores_per_1k']:.4f} cores per "
        f"1,000/s | signin run, {signin['rps']:.0f}/s; other databases "
        f"{signin.get('other_commits_per_s', 0):.0f} commits/s meanwhile (at this rate their WAL can "
        f"dominate) |")
    lines.append(f"| authd memory per million live sessions | {cache * 1e6 / 2 ** 20:.0f} MiB "
                 f"({cache:.0f} B each) | `authd cache-footprint --sessions 1000000` |")
    if row:
        lines.append(f"| PostgreSQL storage per session row | {row['per_row']:.0f} B "
                     f"(authd.sessions with its indexes) | {row['rows']:,} rows, "
                     f"{row['bytes'] / 2 ** 20:.1f} MiB after the bench |")
    lines.append("")
    lines.append("Commits are the benchmark database's `xact_commit` delta (`pg_stat_database`); WAL is "
                 "the `pg_current_wal_lsn()` delta, cluster-wide, so other builds using the same "
                 "PostgreSQL add to it (their commits are named beside); PostgreSQL CPU is the /proc "
                 "time of the benchmark database's backends plus the WAL writer, checkpointer and "
                 "background writer.")
    lines.append("")
    # Extrapolation: linear in each figure, one 2-vCPU instance like this machine.
    per_instance_hash = threads * 1000 / hash_ms
    hash_instances = math.ceil(target_signins / per_instance_hash)
    hash_vcpus = target_signins / s_vcpu
    refresh_vcpus = target_refreshes / r_vcpu
    k = target_refreshes / 1000
    commits = k * refresh["commits_per_1k"] + target_signins * signin["commits_per_1k"] / 1000
    wal = k * refresh["wal_bytes_per_1k"] + target_signins * signin["wal_bytes_per_1k"] / 1000
    pg_cores = k * refresh["pg_cores_per_1k"] + target_signins * signin["pg_cores_per_1k"] / 1000
    instances = max(math.ceil((hash_vcpus + refresh_vcpus) / cores), hash_instances)
    best = max(refresh["rps"], refresh_hi["rps"])
    lines.append(f"**Extrapolated** (linear from the measured rows; not measured) for "
                 f"{target_signins} sign-ins/s and {target_refreshes:,} refreshes/s:")
    lines.append("")
    lines.append("| figure | value | how |")
    lines.append("| --- | --- | --- |")
    lines += [
        f"| authd vCPUs for the sign-ins | {hash_vcpus:.1f} | {target_signins} ÷ {s_vcpu:.0f} per vCPU |",
        f"| authd vCPUs for the refreshes | {refresh_vcpus:.1f} | {target_refreshes:,} ÷ {r_vcpu:.0f} per vCPU |",
        f"| instances of this size ({cores} vCPUs) | {instances} (+1 spare) | the larger of vCPUs ÷ "
        f"{cores} and {target_signins} ÷ {per_instance_hash:.0f} sign-ins/s per instance (hashing "
        f"threads × 1000 ÷ hash ms; `hash_concurrency` = cores doubles it) |",
        f"| PostgreSQL commits/s | {commits:,.0f} | {k:.0f} × {refresh['commits_per_1k']:.0f} + "
        f"{target_signins} × {signin['commits_per_1k'] / 1000:.2f} |",
        f"| PostgreSQL WAL | {wal / 2 ** 20:.1f} MiB/s | same, from the WAL rows |",
        f"| PostgreSQL CPU | {pg_cores:.1f} cores | same, from the CPU rows |",
        f"| one PostgreSQL's refresh ceiling | above what was measured: {best:,.0f} refreshes/s at "
        f"best here, one PostgreSQL on 2 shared vCPUs; whether {target_refreshes:,}/s fits one "
        f"PostgreSQL with {pg_cores:.0f}+ cores is not established | measured maximum |",
    ]
    return "\n".join(lines)
