"""An empty PostgreSQL database: the benchmark's runs start from one, and so do the
tests' (tests/conftest.py loads this file through tests/benchmark_scripts.py)."""

from __future__ import annotations


def reset_postgres(url: str) -> None:
    """Drop everything in the database at `url` (its public schema) and leave it empty."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
