"""The worker role: marks new notes as processed, once a second (a stand-in for background jobs)."""

import signal
import sys
import time

from db import connect

running = True


def stop(*_):
    global running
    running = False


def main():
    signal.signal(signal.SIGTERM, stop)
    while running:
        try:
            with connect() as conn, conn.cursor() as cur:
                cur.execute("UPDATE notes SET processed = true WHERE NOT processed")
                if cur.rowcount:
                    print(f"processed {cur.rowcount} notes", flush=True)
        except Exception as error:  # the database may be restarting: try again
            print(f"worker: {error}", file=sys.stderr, flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
