"""The SQL store's set-up: the SQLAlchemy engine for a URL, and the tables checked or created."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidURL, MirrorKVError
from ..urls import StoreURL, reject_unknown
from ._sql_errors import ErrorTranslator, is_duplicate, is_retryable_conflict
from ._sql_schema import SCHEMA_VERSION, tables

__all__ = ["DRIVERS", "URL_OPTIONS", "create_engine", "parse_option", "prepare", "url_arguments"]

#: The SQLAlchemy driver each URL scheme opens.
DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
#: The MySQL protocol's CLIENT_FOUND_ROWS capability flag.
_CLIENT_FOUND_ROWS = 2
#: How often set-up runs again after meeting another process setting up the same table.
_ATTEMPTS = 20


def create_engine(
    url: StoreURL,
    driver: str,
    pool_size: int,
    max_overflow: int,
    pool_timeout: float,
    connect_timeout: float,
) -> sa.Engine:
    """The SQLAlchemy engine (and its pool) for a store URL, in autocommit mode."""
    database = url.path.lstrip("/") or None
    query = {"charset": "utf8mb4"} if driver.startswith("mysql") else {}
    engine_url = sa.engine.URL.create(
        driver,
        username=url.username or None,
        password=url.password,
        host=url.host or None,
        port=url.port,
        database=database,
        query=query,
    )
    engine = sa.create_engine(
        engine_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        # Connections are in autocommit; the store ends each transaction it begins.
        pool_reset_on_return=None,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": max(1, round(connect_timeout))},
    )
    if driver.startswith("mysql"):

        @sa.event.listens_for(engine, "do_connect")
        def _plain_row_counts(dialect: Any, record: Any, args: Any, params: dict[str, Any]) -> None:
            # SQLAlchemy's MySQL dialects always ask for FOUND_ROWS; the store
            # needs the server's own count (0 where an upsert changed nothing).
            params["client_flag"] = params.get("client_flag", 0) & ~_CLIENT_FOUND_ROWS

    return engine


def prepare(engine: sa.Engine, table: str, where: str, errors: ErrorTranslator) -> None:
    """Create the tables where absent; refuse a table of another layout or version."""
    meta, entries, chunks = tables(table)
    for attempt in range(_ATTEMPTS):
        try:
            with errors, engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    encoding = conn.exec_driver_sql("SHOW server_encoding").scalar()
                    if str(encoding).upper() not in ("UTF8", "UTF-8"):
                        raise MirrorKVError(
                            f"{where}: the database encoding is {encoding}; "
                            "SQLStore needs a UTF8 database (its keys are UTF-8 text)"
                        )
                inspector = sa.inspect(conn)
                had_entries = inspector.has_table(entries.name)
                had_meta = inspector.has_table(meta.name)
                if had_entries and not had_meta:
                    raise MirrorKVError(
                        f"{where}: the table exists but is not a mirrorkv table "
                        f"(no {meta.name} beside it); choose another table="
                    )
                meta.create(conn, checkfirst=True)
                conn.commit()
                version = conn.execute(
                    sa.select(meta.c.value).where(meta.c.name == "schema_version")
                ).scalar()
                if version is None:
                    if had_entries:
                        raise MirrorKVError(
                            f"{where}: the table has no schema version; it was not made by mirrorkv"
                        )
                    conn.execute(
                        sa.insert(meta).values(name="schema_version", value=str(SCHEMA_VERSION))
                    )
                    conn.commit()
                    version = str(SCHEMA_VERSION)
                if version != str(SCHEMA_VERSION):
                    raise MirrorKVError(
                        f"{where}: the table has schema version {version}, this "
                        f"mirrorkv reads version {SCHEMA_VERSION}; upgrade mirrorkv or use "
                        "another table="
                    )
                entries.create(conn, checkfirst=True)
                chunks.create(conn, checkfirst=True)
                conn.commit()
            return
        except MirrorKVError as error:
            # Another process created a table or the version row at the same moment.
            cause = error.__cause__
            if cause is None or attempt == _ATTEMPTS - 1:
                raise
            if not (is_duplicate(cause) or is_retryable_conflict(cause)):
                raise
            time.sleep(0.01 * (attempt + 1))


def parse_option(name: str, value: Any, kind: type[int | float]) -> Any:
    """A URL option's number; :class:`InvalidURL` where it is not one."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidURL(f"option {name} takes a number, not {value!r}") from None


#: The options a SQL URL (a store's or a PostgreSQL index's) accepts.
URL_OPTIONS = ("table", "pool_size", "max_overflow", "pool_timeout", "connect_timeout")


def url_arguments(url: StoreURL, options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments that a SQL URL's ``options`` give; :class:`InvalidURL` otherwise."""
    reject_unknown(url, options, URL_OPTIONS)
    kwargs: dict[str, Any] = {}
    if "table" in options:
        kwargs["table"] = str(options["table"])
    for name in ("pool_size", "max_overflow"):
        if name in options:
            kwargs[name] = parse_option(name, options[name], int)
    for name in ("pool_timeout", "connect_timeout"):
        if name in options:
            kwargs[name] = parse_option(name, options[name], float)
    return kwargs
