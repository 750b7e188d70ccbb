"""Where the test suite finds Postgres and Redis.

In order: ``AGGREGATOR_TEST_DATABASE_URL`` / ``AGGREGATOR_TEST_REDIS_URL``;
else servers already listening on localhost's default ports. Each session
works in a database of its own (created and dropped here) and a Redis
database number it flushes, so the shared servers' other data is untouched.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def server_database_url() -> str | None:
    url = os.environ.get("AGGREGATOR_TEST_DATABASE_URL")
    if url:
        return url
    if listening("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None


def server_redis_url() -> str | None:
    url = os.environ.get("AGGREGATOR_TEST_REDIS_URL")
    if url:
        return url
    if listening("127.0.0.1", 6379):
        return f"redis://127.0.0.1:6379/{claim_redis_db('127.0.0.1', 6379)}"
    return None


SESSION_KEY = "aggregator-test-session"


def claim_redis_db(host: str, port: int) -> int:
    """A Redis database number no other test session is using (arq's queue names are
    fixed, so two sessions sharing one database would run each other's jobs)."""
    for db in range(15, 0, -1):
        client = redis.Redis(host=host, port=port, db=db)
        try:
            if client.set(SESSION_KEY, os.getpid(), nx=True, ex=3 * 3600):
                return db
        finally:
            client.close()
    raise RuntimeError("every Redis database 1-15 is claimed by another test session")


def release_redis_db(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        if client.get(SESSION_KEY) == str(os.getpid()).encode():
            client.delete(SESSION_KEY)
    finally:
        client.close()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
