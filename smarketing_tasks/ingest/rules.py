"""Row rules of purchase ingestion, as SQL over the landed text rows.

Rows land in a temporary table of the warehouse (``landing.py``), as text except the columns a typed
source sent in binary (``landed_typed``); every rule below is one SQL condition over the landed value
(``l.<column>``) and the typed value (``t.<column>``). Running the rules where
the rows already are is what keeps ingestion near the speed of a plain COPY: no row is parsed in Python.

Each rule has a stable name (``rule``, for grouping in ``smarketing.quarantine``) and a sentence for
people (``reason``, an SQL expression evaluated only for failing rows, so it may quote the bad value). A
row that breaks several rules is quarantined once per rule, so the table says everything wrong with it at
once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from smarketing_tasks.schema import ORDER_STATUSES, SOURCE_COLUMNS

EMAIL_PATTERN = r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z]{2,}"
TRUE_WORDS = ("t", "true", "1", "yes", "y")
FALSE_WORDS = ("f", "false", "0", "no", "n")
# numeric(14,2) holds amounts below 10^12; larger ones are rejected here rather than failing the load.
AMOUNT_LIMIT = "1e12"
UPPER_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Free-text contact and place columns of customers, stored trimmed and with blank as null.
TRIMMED_CUSTOMER_COLUMNS = ("first_name", "phone", "country", "time_zone")
TIMESTAMP_COLUMNS = {
    "customers": ("created_at", "updated_at"),
    "orders": ("ordered_at", "shipped_at", "delivered_at", "updated_at"),
    "order_items": ("updated_at",),
}
REQUIRED_COLUMNS = {
    "customers": ("customer_id", "updated_at"),
    "orders": ("order_id", "customer_id", "ordered_at", "status", "total_amount", "currency", "updated_at"),
    "order_items": ("order_id", "line_no", "sku", "quantity", "unit_price", "updated_at"),
}


@dataclass(frozen=True)
class Rule:
    name: str
    broken: str  # SQL condition; null counts as "not broken"
    reason: str  # SQL text expression, evaluated for failing rows only


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _words(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(_text(v) for v in values) + ")"


def _quoted(column: str) -> str:
    """The landed value in quotes after a reason, cut at 200 characters (as people read it); a column that
    landed typed is printed first."""
    return f"'''' || coalesce(left(l.{column}::text, 200), '') || ''''"


def _trimmed(column: str) -> str:
    return f"btrim(l.{column}, E' \\t\\r\\n\\f')"


def _blank(column: str) -> str:
    """Null or only whitespace. Trimming every value cost more than the rest of an id's checks, so the
    text is trimmed only when it starts with one of the trimmed characters."""
    return (f"(l.{column} is null or l.{column} = '' "
            f"or (ascii(l.{column}) in (32, 9, 10, 13, 12) and {_trimmed(column)} = ''))")


# Shape checks that come before a cast (see migration 0013 for why they are not regular expressions).
_TIMESTAMP_SHAPE = "left(l.{c}, 10) like '____-__-__'"
_NUMBER_SHAPE = "translate(l.{c}, '0123456789+-.eE ', '') = ''"
_INTEGER_SHAPE = "translate(l.{c}, '0123456789+- ', '') = ''"


# The values a typed numeric column can hold that are no real amount (timestamps: ``isfinite``).
_SPECIAL_NUMBERS = "('NaN', 'Infinity', '-Infinity')"
# Source column types that travel in binary and land typed (``typed_source_columns``).
SOURCE_TYPES = {"timestamptz": "timestamp with time zone", "numeric": "numeric", "integer": "integer"}


def column_type(dataset: str, column: str) -> str:
    """The warehouse type of a reference column: timestamptz, numeric, integer or text."""
    if column in TIMESTAMP_COLUMNS[dataset]:
        return "timestamptz"
    if column in ("total_amount", "unit_price"):
        return "numeric"
    if column in ("line_no", "quantity"):
        return "integer"
    return "text"


@cache
def typed_columns(dataset: str, safe: bool = True,
                  landed_typed: frozenset[str] = frozenset()) -> dict[str, tuple[str, str]]:
    """Column -> (SQL type, SQL expression over the landed row ``l``), reference columns first.

    ``safe=False`` is the optimistic form: after the shape check it casts directly, which costs a third
    of the ``smarketing.try_*`` functions but raises on a well-shaped impossible value ('2026-13-45',
    '1e99999'); the caller then runs the safe form, which turns such a value into null (and a reject).
    ``landed_typed``: columns that landed in their own type (a binary COPY of the columns a source stores
    typed, ``typed_source_columns``): nothing to cast or shape-check; the special values are still refused.
    """
    def timestamp(c: str) -> str:
        if c in landed_typed:
            return f"case when isfinite(l.{c}) then l.{c} end"
        if safe:
            return f"smarketing.try_timestamptz(l.{c})"
        return f"case when {_TIMESTAMP_SHAPE.format(c=c)} then l.{c}::timestamptz end"

    def number(c: str) -> str:
        if c in landed_typed:
            return f"case when l.{c} in {_SPECIAL_NUMBERS} then null else l.{c} end"
        return f"smarketing.try_numeric(l.{c})" if safe else f"case when {_NUMBER_SHAPE.format(c=c)} then l.{c}::numeric end"

    def integer(c: str) -> str:
        if c in landed_typed:
            return f"l.{c}"
        if safe:
            return f"smarketing.try_integer(l.{c})"
        return f"case when {_INTEGER_SHAPE.format(c=c)} then l.{c}::integer else smarketing.try_integer(l.{c}) end"

    cast = {"timestamptz": timestamp, "numeric": number, "integer": integer}
    columns: dict[str, tuple[str, str]] = {}
    for column in SOURCE_COLUMNS[dataset]:
        kind = column_type(dataset, column)
        if kind in cast:
            columns[column] = (kind, cast[kind](column))
        elif column.endswith("_id"):
            columns[column] = ("text", f"case when {_blank(column)} then null else l.{column} end")
        else:
            columns[column] = ("text", f"l.{column}")
    if dataset == "customers":
        columns["email"] = ("text", f"nullif(lower({_trimmed('email')}), '')")
        # Stored as people meant them: "+44 20 7946 0000 " or "GB\n" from a spreadsheet export is the
        # number or country without its whitespace (so the audit's patterns can refuse any), "" is none.
        for column in TRIMMED_CUSTOMER_COLUMNS:
            columns[column] = ("text", f"nullif({_trimmed(column)}, '')")
        for flag in ("accepts_marketing", "accepts_sms"):
            columns[flag] = ("boolean", f"coalesce(lower({_trimmed(flag)}) in {_words(TRUE_WORDS)}, false)")
        for flag in ("accepts_marketing", "accepts_sms"):  # checked once here, not again in the rule
            columns[f"{flag}_is_word"] = ("boolean", f"lower({_trimmed(flag)}) in {_words(TRUE_WORDS + FALSE_WORDS)}")
    elif dataset == "orders":
        columns["status"] = ("text", f"lower({_trimmed('status')} collate \"C\")")
        columns["total_amount"] = ("numeric", f"round({columns['total_amount'][1]}, 2)")
        columns["currency"] = ("text", f"upper({_trimmed('currency')} collate \"C\")")
        columns["discount_code"] = ("text", f"nullif({_trimmed('discount_code')}, '')")
    return columns


def _columns_with(condition: str, columns: tuple[str, ...]) -> str:
    """The names of the columns for which ``condition`` (with ``{c}``) holds, as readable text."""
    names = ", ".join(f"case when {condition.format(c=c)} then {_text(c)} end" for c in columns)
    return f"array_to_string(array_remove(array[{names}], null), ' and ')"


@cache
def rules(dataset: str, landed_typed: frozenset[str] = frozenset()) -> tuple[Rule, ...]:
    """Every rule of ``dataset`` in the order people read them (``:until`` is the run's "now", and
    ``:until_text`` the same in ISO 8601 for reasons). ``landed_typed``: columns landed in their own type
    (``typed_columns``); only text can hold undecodable bytes, and a typed value is missing when null."""
    columns = tuple(c for c in SOURCE_COLUMNS[dataset] if c not in landed_typed)
    replacement = "strpos(l.{c}, U&'\\FFFD') > 0"
    found = [
        Rule("unreadable_record", "l._source_error is not null", _quoted("_source_error")),
        # One scan over all the text of a row; which columns it was is worked out for failing rows only.
        Rule("undecodable_text", f"strpos(concat({', '.join(f'l.{c}' for c in columns)}), U&'\\FFFD') > 0",
             f"{_columns_with(replacement, columns)} || ' holds bytes that are not valid UTF-8'"),
        Rule("nul_byte", "l._nul_columns is not null", "array_to_string(l._nul_columns, ' and ') || ' holds a NUL byte'"),
    ]
    for column in REQUIRED_COLUMNS[dataset]:
        found.append(Rule(f"missing_{column}", _missing(dataset, column, landed_typed), _text(f"{column} is missing")))
    for column in TIMESTAMP_COLUMNS[dataset]:
        found.append(Rule(f"bad_timestamp_{column}", f"l.{column} is not null and t.{column} is null",
                          f"{_text(f'{column} is not an ISO 8601 timestamp: ')} || {_quoted(column)}"))
        found.append(Rule(f"future_{column}", f"t.{column} > :until",
                          f"{_text(f'{column} is later than the run' + chr(39) + 's time ')} || :until_text"))
    found.extend(_DATASET_RULES[dataset]())
    return tuple(found)


def _missing(dataset: str, column: str, landed_typed: frozenset[str] = frozenset()) -> str:
    """Null or only whitespace, decided from the typed value where it already says so: a typed id or
    trimmed word is null or empty exactly when the landed text is blank, and a cast value is null for
    every blank text, so the landed text is trimmed again only for rows whose value is null."""
    if column in landed_typed:
        return f"l.{column} is null"
    typed = typed_columns(dataset)[column][1]
    if column.endswith("_id"):
        return f"t.{column} is null"
    if typed.startswith(("lower(", "upper(")):
        return f"(t.{column} = '') is not false"
    if typed == f"l.{column}":
        return _blank(column)
    return f"t.{column} is null and {_blank(column)}"


def _customer_rules() -> list[Rule]:
    return [
        Rule("malformed_email", f"t.email !~ {_text('^(?:' + EMAIL_PATTERN + ')$')}",
             f"'email is not a well-formed address: ' || {_quoted('email')}"),
        Rule("unknown_time_zone", "t.time_zone is not null and not (t.time_zone in (select name from known_zones))",
             f"'time_zone is not an IANA zone name: ' || {_quoted('time_zone')}"),
        *(Rule(f"bad_boolean_{flag}", f"l.{flag} is not null and not t.{flag}_is_word",
               f"'{flag} is not true/false: ' || {_quoted(flag)}")
          for flag in ("accepts_marketing", "accepts_sms")),
        Rule("created_after_updated", "t.created_at > t.updated_at", "'created_at is later than updated_at'"),
    ]


def _order_rules() -> list[Rule]:
    statuses = "|".join(ORDER_STATUSES)
    return [
        Rule("unknown_status", f"l.status is not null and t.status not in {_words(ORDER_STATUSES)}",
             f"'status is not one of {statuses}: ' || {_quoted('status')}"),
        Rule("bad_total_amount", "l.total_amount is not null and t.total_amount is null",
             f"'total_amount is not a number: ' || {_quoted('total_amount')}"),
        Rule("negative_total_amount", "t.total_amount < 0", f"'total_amount is negative: ' || {_quoted('total_amount')}"),
        Rule("total_amount_out_of_range", f"abs(t.total_amount) >= {AMOUNT_LIMIT}",
             f"'total_amount is too large (10^12 or more): ' || {_quoted('total_amount')}"),
        Rule("bad_currency",
             f"l.currency is not null and (length(t.currency) <> 3 or translate(t.currency, {_text(UPPER_LETTERS)}, '') <> '')",
             f"'currency is not a 3-letter ISO 4217 code: ' || {_quoted('currency')}"),
        Rule("shipped_before_ordered", "t.shipped_at < t.ordered_at", "'shipped_at is earlier than ordered_at'"),
        Rule("delivered_before_shipped", "t.delivered_at < coalesce(t.shipped_at, t.ordered_at)",
             "'delivered_at is earlier than shipped_at (or ordered_at)'"),
        Rule("ordered_after_updated", "t.ordered_at > t.updated_at", "'ordered_at is later than updated_at'"),
        Rule("shipped_without_time", "t.status = 'shipped' and t.shipped_at is null",
             "'status is shipped but shipped_at is missing'"),
    ]


def _item_rules() -> list[Rule]:
    found = [
        Rule(f"bad_{column}", f"l.{column} is not null and t.{column} is null",
             f"'{column} is not an integer: ' || {_quoted(column)}")
        for column in ("line_no", "quantity")
    ]
    found += [
        Rule("bad_unit_price", "l.unit_price is not null and t.unit_price is null",
             f"'unit_price is not a number: ' || {_quoted('unit_price')}"),
        Rule("non_positive_quantity", "t.quantity <= 0", f"'quantity must be at least 1: ' || {_quoted('quantity')}"),
        Rule("negative_unit_price", "t.unit_price < 0", f"'unit_price is negative: ' || {_quoted('unit_price')}"),
        Rule("unit_price_out_of_range", f"abs(t.unit_price) >= {AMOUNT_LIMIT}",
             f"'unit_price is too large (10^12 or more): ' || {_quoted('unit_price')}"),
    ]
    return found


_DATASET_RULES = {"customers": _customer_rules, "orders": _order_rules, "order_items": _item_rules}
