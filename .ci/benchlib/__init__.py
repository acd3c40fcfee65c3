"""The pieces of `.ci/bench.py`: servers and authload runs (`proc`), the
database's cost meter (`dbcost`), medians of repeated runs (`runs`), the
per-store scenarios (`stores`), revocation across two instances
(`propagation`), the soak (`soak`) and the text written to `.ci/RESULTS.md` and
README.md (`report`, `sizing`)."""
