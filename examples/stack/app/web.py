"""A small web app on Postgres: notes in, notes out, and a health check that asks the database.

GET /up      200 "ok" when the database answers (the proxy's health check), else 503
GET /notes   every note as JSON, with every column the schema has (a migration adds one: it shows up)
POST /notes  a JSON object; its keys that are columns of notes are stored; answers {"id": N}
GET /version the release this container runs (KAMAL_VERSION, which kamalpy and Kamal set)

It drains on SIGTERM, as the caddy driver needs: the listener closes, requests in flight finish.
"""

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from db import connect


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/up":
            try:
                with connect() as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                self.answer(200, "ok\n", "text/plain")
            except Exception as error:  # any database trouble: not healthy
                self.answer(503, f"database: {error}\n", "text/plain")
        elif self.path == "/notes":
            with connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT * FROM notes ORDER BY id")
                names = [column.name for column in cur.description]
                rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            self.answer(200, json.dumps(rows, default=str) + "\n")
        elif self.path == "/version":
            self.answer(200, os.environ.get("KAMAL_VERSION", "unknown") + "\n", "text/plain")
        else:
            self.answer(404, "not found\n", "text/plain")

    def do_POST(self):
        if self.path != "/notes":
            return self.answer(404, "not found\n", "text/plain")
        note = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'notes'")
            columns = {row[0] for row in cur.fetchall()} - {"id", "created_at"}
            keys = sorted(k for k in note if k in columns)
            if not keys:
                return self.answer(400, json.dumps({"error": f"no column among {sorted(note)}"}) + "\n")
            cur.execute(f"INSERT INTO notes ({', '.join(keys)}) VALUES ({', '.join(['%s'] * len(keys))}) "
                        "RETURNING id", [note[k] for k in keys])
            new_id = cur.fetchone()[0]
        self.answer(201, json.dumps({"id": new_id}) + "\n")

    def answer(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler)
    server.daemon_threads = False  # server_close() waits for the requests in flight
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
