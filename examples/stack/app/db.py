"""The database connection, from the environment Kamal gives the container (DB_HOST, DB_NAME, DB_PASSWORD)."""

import os

import psycopg2


def connect():
    return psycopg2.connect(host=os.environ["DB_HOST"], port=int(os.environ.get("DB_PORT", "5432")),
                            dbname=os.environ.get("DB_NAME", "stack"), user=os.environ.get("DB_USER", "postgres"),
                            password=os.environ["DB_PASSWORD"], connect_timeout=5)
