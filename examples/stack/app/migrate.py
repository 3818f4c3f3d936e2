"""Apply the SQL files in migrations/ that the database has not seen yet, in name order, each in a transaction.

Run by the pre-deploy hook with the image being deployed (`kamalpy app exec --version ...`), so the schema is
ready before any container of the new version starts. An advisory lock keeps two runs from interleaving.
"""

import sys
from pathlib import Path

from db import connect

MIGRATIONS = Path(__file__).with_name("migrations")


def main() -> int:
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(4242)")
        cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")
        cur.execute("SELECT name FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in done:
                continue
            cur.execute(path.read_text())
            cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            print(f"migrated {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
