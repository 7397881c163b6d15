"""The customers suite validates in PostgreSQL, and in Python when it checks a frame (or runs with
``force_mode=pandas``): each of its regular expressions must accept exactly the same texts in both, and
what it accepted when the suite validated in pandas (Python's ``re``, with ``\\s`` and ``$``), a trailing
newline apart.

GX matches in pandas with ``str.contains`` (``re.search``) and in PostgreSQL with ``~``; both skip nulls.
PostgreSQL's ``\\s`` follows the database's locale, so the suite spells out Python's ``\\s``. It ends with
``\\Z`` (nothing after the value, not even the newline Python's ``$`` allows): ingest trims these columns.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from smarketing_tasks.quality import load_suite

# The customers suite's patterns while it validated in pandas.
PANDAS_ERA = {
    "email": r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z]{2,}$",
    "phone": r"^\+?[0-9][0-9 ().\-]{5,24}$",
    "country": r"^[A-Z]{2}$",
    "time_zone": r"^(?:UTC|[A-Z][A-Za-z_]+(?:/[A-Za-z0-9_+\-]+){1,2})$",
}
# Texts on which regex dialects disagree: Unicode and control spaces, newlines at either end, brackets,
# quotes and backslashes in classes, letters beyond ASCII in ranges, bounds.
TRICKY = {
    "email": ["ann@example.com", "ann@example.com\n", "ann@example.com\n\n", "\nann@example.com", "ann@example.com ",
              "ann smith@example.com", "ann\u00a0smith@example.com", "ann\u2003smith@example.com",
              "ann\u3000@example.com", "ann\x1c@example.com", "ann\x85@example.com", "ann\u200b@example.com",
              "ann\u2028@example.com", "ann\tx@example.com", "ann\vx@example.com", "ann\rx@example.com",
              "ann@exam\u00a0ple.com", "ann@example.c", "ann@example.cöm", "ann@example.COM", "änn@example.de",
              "ann@@example.com", "ann@b@example.com", "a\"nn@example.com", "a[nn@example.com", "a]nn@example.com",
              "a\\nn@example.com", "a,nn@example.com", "a;nn@example.com", "a:nn@example.com", "a(n)n@example.com",
              "<ann>@example.com", "ann@localhost", "ann@example.com\u00a0", "ann@example.co\u1680", "@example.com",
              "ann@.com", "ann@example..com", "ann@example.ab1", "ann@ex.ample.com", "x@y.zz", "ann@example.\u212aom"],
    "phone": ["+49 30 1234567", "+49 30 1234567\n", "+49 30 1234567\n\n", "\n+49 30 1234567", "(030) 123-4567",
              "030.123.4567", "++49 123456", "+49", "1234567890123456789012345", "12345678901234567890123456",
              "123456", "12345", "+4930\u00a0123456", "+49\u200030123456", "4930\\123456", "+49-30-12a4567",
              "٣٠١٢٣٤٥٦٧", "+49 30 1234567 ", " +49 30 1234567", "1-----", "+1 (555) 010-9999"],
    "country": ["DE", "DE\n", "DE\n\n", "\nDE", "De", "de", "DEU", "D", "ÄB", "DE ", "D\u00a0", "Ｄ\uff25", "\u212aE"],
    "time_zone": ["UTC", "UTC\n", "utc", "Europe/Paris", "Europe/Paris\n", "Europe/Paris\n\n", "\nEurope/Paris",
                  "America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires/X", "Etc/GMT+5", "Etc/GMT-14",
                  "Europe/Pärís", "Éurope/Paris", "Europe/Paris ", "Europe/ Paris", "Europe", "E/P", "Ex/P",
                  "+02:00", "Europe//Paris", "Europe/Paris/", "Europe\\Paris", "America/Port-au-Prince"],
}
# Each character of the Basic Multilingual Plane (and a few beyond) in each kind of place a pattern checks.
TEMPLATES = {
    "email": ["a{}b@example.com", "ab@ex{}ample.com", "ab@example.c{}m", "ab@example.com{}", "{}ab@example.com"],
    "phone": ["+49 30{}1234567", "+4930123456{}", "{}4930123456"],
    "country": ["D{}", "{}E", "DE{}"],
    "time_zone": ["Europe/Pa{}is", "Euro{}e/Paris", "Europe/Paris{}", "{}UTC"],
}
CHARACTERS = [chr(c) for c in [*range(1, 0xD800), *range(0xE000, 0x10000), 0x1F600, 0x10FFFD]]


def _patterns() -> dict[str, str]:
    return {spec.kwargs["column"]: spec.kwargs["regex"] for spec in load_suite("customers").expectations
            if spec.type == "expect_column_values_to_match_regex"}


def _texts(column: str) -> list[str]:
    return TRICKY[column] + [template.format(c) for template in TEMPLATES[column] for c in CHARACTERS]


def _python(pattern: str, texts: list[str]) -> list[bool]:
    compiled = re.compile(pattern)
    return [compiled.search(text) is not None for text in texts]


def test_the_customers_suite_checks_every_column_it_checked_in_pandas():
    assert set(_patterns()) == set(PANDAS_ERA)
    assert load_suite("customers").mode == "sql"


@pytest.mark.parametrize("column", sorted(PANDAS_ERA))
def test_each_pattern_accepts_what_the_pandas_era_pattern_accepted_except_a_trailing_newline(column: str):
    """Ingest now trims these columns, so a value ending in a newline can only be a fault: refused."""
    texts = _texts(column)
    now, before = _python(_patterns()[column], texts), _python(PANDAS_ERA[column], texts)

    expected = [accepted and not text.endswith("\n") for text, accepted in zip(texts, before, strict=True)]
    differing = [text for text, a, b in zip(texts, now, expected, strict=True) if a != b]
    assert not differing, differing[:10]
    assert any(now) and not all(now)  # the texts include both kinds
    assert any(accepted and text.endswith("\n") for text, accepted in zip(texts, before, strict=True))


def _collations(conn: sa.Connection) -> list[str | None]:
    """The database's default, C, and ICU's root locale where the server has ICU."""
    icu = conn.execute(sa.text("select 1 from pg_collation where collname = 'und-x-icu'")).scalar()
    return [None, "C", *(["und-x-icu"] if icu else [])]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("column", sorted(PANDAS_ERA))
def test_postgresql_accepts_exactly_what_python_accepts_under_any_collation(admin_url: str, column: str):
    _assert_postgresql_agrees(admin_url, _patterns()[column], _texts(column))


# Orders and order items validate in PostgreSQL too, and in Python for frames: their patterns are spelled the
# same way. They keep PostgreSQL's meaning, the one their audit of tables has always had: nothing after the
# text's end (`\Z`), and a sku may hold a newline inside (`(?s)`: `.` matches one, as PostgreSQL's does).
WAREHOUSE_PATTERNS = {("orders", "currency"), ("order_items", "sku")}
WAREHOUSE_TRICKY = {
    ("orders", "currency"): (["EUR", "USD"], ["EUR\n", "\nEUR", "eur", "Eur", "EU", "EURO", "EUR ", " EUR", "ÄUR",
                                              "\u212aUR", "ＥＵＲ", "E\u00a0R", ""]),
    ("order_items", "sku"): (["SKU-TEE-001", "A", "A B", "A\nB", "ä-1", "sku_1/2"],
                             ["SKU ", " SKU", "SKU\n", "\nSKU", "SKU\u00a0", "\u2003SKU", "SKU\u3000", "SKU\x1c",
                              "SKU\x85", "\t", " ", ""]),
}
WAREHOUSE_TEMPLATES = {("orders", "currency"): ["E{}R", "EU{}", "{}UR", "EUR{}"],
                       ("order_items", "sku"): ["{}SKU", "SKU{}", "S{}U", "{}"]}


def _suite_pattern(suite: str, column: str) -> str:
    (pattern,) = [spec.kwargs["regex"] for spec in load_suite(suite).expectations
                  if spec.type == "expect_column_values_to_match_regex" and spec.kwargs["column"] == column]
    return pattern


@pytest.mark.parametrize(("suite", "column"), sorted(WAREHOUSE_PATTERNS))
def test_warehouse_patterns_keep_postgresqls_meaning_in_python(suite: str, column: str):
    accepted, refused = WAREHOUSE_TRICKY[(suite, column)]
    pattern = _suite_pattern(suite, column)
    assert _python(pattern, accepted) == [True] * len(accepted)
    assert _python(pattern, refused) == [False] * len(refused)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(("suite", "column"), sorted(WAREHOUSE_PATTERNS))
def test_warehouse_patterns_mean_the_same_in_postgresql_under_any_collation(admin_url: str, suite: str, column: str):
    accepted, refused = WAREHOUSE_TRICKY[(suite, column)]
    texts = accepted + refused + [t.format(c) for t in WAREHOUSE_TEMPLATES[(suite, column)] for c in CHARACTERS]
    _assert_postgresql_agrees(admin_url, _suite_pattern(suite, column), texts)


def _assert_postgresql_agrees(admin_url: str, pattern: str, texts: list[str]) -> None:
    """PostgreSQL's ``~`` accepts exactly the texts Python's ``re.search`` accepts, under every collation."""
    from smarketing_tasks.db import make_engine

    expected = _python(pattern, texts)
    engine = make_engine(admin_url)
    try:
        with engine.connect() as conn:
            collations = _collations(conn)
            matches = ", ".join(f"t{f' collate {chr(34)}{c}{chr(34)}' if c else ''} ~ :pattern" for c in collations)
            rows = conn.execute(sa.text(f"select {matches} from unnest(cast(:texts as text[])) with ordinality u(t, n) "
                                        "order by n"), {"pattern": pattern, "texts": texts}).all()
    finally:
        engine.dispose()
    for index, collation in enumerate(collations):
        differing = [(text, python) for text, python, row in zip(texts, expected, rows, strict=True)
                     if row[index] != python]
        assert not differing, (collation or "the database's default", differing[:10])
