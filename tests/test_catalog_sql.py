"""catalog.sql holds every statement the catalogue runs: each one the code names exists, each one
it holds is used, and each runs against the schema it creates."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import iffse_lib.catalog
from iffse_lib.catalog.sql import SQL, script, statements

PACKAGE = Path(iffse_lib.catalog.__file__).parent
#: statements that change the connection's state rather than read or write rows
CONTROL = {"begin_write", "begin_read", "commit", "rollback", "empty_wal", "schema", "migrate_1", "migrate_2",
           "writer_settings", "reader_settings"}


def _named_in_code() -> set[str]:
    code = "\n".join(p.read_text() for p in PACKAGE.glob("*.py") if p.name != "sql.py")
    return set(re.findall(r"\bSQL\.(\w+)", code)) | set(re.findall(r"script\(\"(\w+)\"", code)) \
        | set(re.findall(r"\"(migrate_\d+)\"", code)) | set(re.findall(r"\"(\w+_settings)\"", code))


def test_every_statement_named_in_the_code_is_in_catalog_sql_and_every_one_there_is_used():
    held = set(statements())
    used = _named_in_code()
    assert used - held == set(), "named in the code but not in catalog.sql"
    assert held - used == set(), "in catalog.sql but used nowhere"


def test_every_statement_runs_against_the_schema():
    db = sqlite3.connect(":memory:", isolation_level=None)
    for name in ("schema",):
        for statement in script(name):
            db.execute(statement)
    db.execute("BEGIN")
    for name, sql in statements().items():
        if name in CONTROL:
            continue
        for statement in script(name):
            named = set(re.findall(r"(?<!:):(\w+)", statement))
            params = {k: None for k in named} if named else (None,) * statement.count("?")
            db.execute("EXPLAIN " + statement, params)  # compiled: a syntax error, a missing table or column raises
    db.execute("ROLLBACK")


def test_a_statement_the_file_does_not_hold_is_an_attribute_error():
    try:
        SQL.no_such_statement
    except AttributeError as exc:
        assert "no_such_statement" in str(exc)
    else:
        raise AssertionError("no error")
