"""What a timed window costs PostgreSQL and authd: commits (the
`xact_commit` delta of the benchmark's database in `pg_stat_database`),
WAL bytes (`pg_current_wal_lsn()` delta: cluster-wide, so other databases'
work in the window counts too; their commits are reported beside it as
`other_commits_per_s`), PostgreSQL CPU (user + system time from /proc of
the backends connected to the benchmark's database, per
`pg_stat_activity`, plus the shared WAL writer, checkpointer and background
writer), authd's own CPU, the load generator's CPU and the machine's idle
time (/proc/stat): together, where each request's CPU went."""

import time

from .proc import CLK_TCK, cpu_seconds, psql


AUXILIARY = ("walwriter", "checkpointer", "background writer")


def idle_seconds():
    """Idle + iowait time of all CPUs so far (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / CLK_TCK


def postgres_ticks(db):
    """{pid: cpu ticks} of the database's backends and the shared writers."""
    kinds = ", ".join(f"'{k}'" for k in AUXILIARY)
    pids = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}' OR backend_type IN ({kinds})")
    ticks = {}
    for pid in pids.split():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[int(pid)] = int(fields[11]) + int(fields[12])
    return ticks


class Meter:
    """Snapshot at `start()`, difference at `stop()`; `db` is the database
    whose commits count (None: SQLite, only authd's CPU is measured);
    `load_pid` the load generator's process."""

    def __init__(self, db, server, load_pid=None):
        self.db = db
        self.server = server
        self.load_pid = load_pid

    def _snapshot(self):
        snap = {"t": time.time(), "authd_cpu": self.server.cpu(), "idle": idle_seconds(),
                "load_cpu": cpu_seconds(self.load_pid) if self.load_pid else 0.0}
        if self.db:
            row = psql(f"SELECT sum(xact_commit) FILTER (WHERE datname = '{self.db}'), "
                       f"sum(xact_commit) FILTER (WHERE datname IS DISTINCT FROM '{self.db}'), "
                       f"pg_current_wal_lsn() - '0/0'::pg_lsn FROM pg_stat_database")
            commits, others, wal = row.split("|")
            snap.update(commits=int(commits), others=int(others), wal=int(float(wal)),
                        pg=postgres_ticks(self.db))
        return snap

    def start(self):
        self.before = self._snapshot()

    def stop(self):
        after = self._snapshot()
        b = self.before
        secs = after["t"] - b["t"]
        out = {"seconds": secs, "authd_cores": (after["authd_cpu"] - b["authd_cpu"]) / secs,
               "idle_cores": (after["idle"] - b["idle"]) / secs}
        if self.load_pid:
            out["load_cores"] = (after["load_cpu"] - b["load_cpu"]) / secs
        if self.db:
            # Backends present at both ends (a pooled connection lives long).
            pg = sum(t - b["pg"][pid] for pid, t in after["pg"].items() if pid in b["pg"])
            # The two psql snapshots themselves commit once each.
            out.update(commits_per_s=(after["commits"] - b["commits"] - 1) / secs,
                       other_commits_per_s=(after["others"] - b["others"]) / secs,
                       wal_bytes_per_s=(after["wal"] - b["wal"]) / secs,
                       pg_cores=pg / CLK_TCK / secs)
        return out
