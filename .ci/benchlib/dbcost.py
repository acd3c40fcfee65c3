"""What a timed window costs PostgreSQL and authd: commits (the
`xact_commit` delta of the benchmark's database in `pg_stat_database`),
WAL bytes (`pg_current_wal_lsn()` delta, cluster-wide), PostgreSQL CPU
(user + system time of every process named `postgres`, from /proc) and
authd's own CPU. WAL and PostgreSQL CPU are the whole cluster's: other work
on the same PostgreSQL during the window is counted too."""

import os
import time

from .proc import CLK_TCK, psql


def postgres_ticks():
    """{pid: cpu ticks} of every process named postgres."""
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.find("(") + 1:raw.rfind(")")]
        if name != "postgres" and not name.startswith("postgres"):
            continue
        fields = raw.rsplit(")", 1)[1].split()
        ticks[int(pid)] = int(fields[11]) + int(fields[12])
    return ticks


class Meter:
    """Snapshot at `start()`, difference at `stop()`; `db` is the database
    whose commits count (None: SQLite, only authd's CPU is measured)."""

    def __init__(self, db, server):
        self.db = db
        self.server = server

    def _snapshot(self):
        snap = {"t": time.time(), "authd_cpu": self.server.cpu()}
        if self.db:
            row = psql(f"SELECT xact_commit, pg_current_wal_lsn() - '0/0'::pg_lsn "
                       f"FROM pg_stat_database WHERE datname = '{self.db}'")
            commits, wal = row.split("|")
            snap.update(commits=int(commits), wal=int(float(wal)), pg=postgres_ticks())
        return snap

    def start(self):
        self.before = self._snapshot()

    def stop(self):
        after = self._snapshot()
        b = self.before
        secs = after["t"] - b["t"]
        out = {"seconds": secs, "authd_cores": (after["authd_cpu"] - b["authd_cpu"]) / secs}
        if self.db:
            pg = sum(t - b["pg"].get(pid, 0) for pid, t in after["pg"].items())
            # The two psql snapshots themselves commit once each.
            out.update(commits_per_s=(after["commits"] - b["commits"] - 1) / secs,
                       wal_bytes_per_s=(after["wal"] - b["wal"]) / secs,
                       pg_cores=pg / CLK_TCK / secs)
        return out
