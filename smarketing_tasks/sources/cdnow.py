"""The real CDNOW purchase history (1997-98) mapped onto the reference schema.

Mapping, one CDNOW line (customer, date, number of CDs, dollar value) at a time:

- ``customers``: ``customer_id`` as in the file (``"00001"``); no contact data, no consent (CDNOW
  gives none, so nobody is contactable); ``created_at``/``updated_at`` = first purchase day.
- ``orders``: one order per line, ``order_id = "<customer>-<yyyymmdd>-<n>"`` (n counts lines of the same
  customer and day); ``ordered_at`` = the day at 00:00 UTC; status ``delivered`` with no shipping or
  delivery time (the file has none, so outreach uses its after-ordering fallback); ``total_amount`` =
  dollar value in USD; ``updated_at`` = ``ordered_at``.
- ``order_items``: one line per order, sku ``CDNOW-CD``, quantity = number of CDs, unit price =
  dollar value / CDs (rounded to cents; the order total stays the exact dollar value).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from smarketing_tasks.schema import CHANGE_COLUMN, PURCHASE_DATASETS, SOURCE_COLUMNS
from smarketing_tasks.sources.base import Window

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "cdnow" / "CDNOW_master.txt"


class CdnowSource:
    name = "cdnow"

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path) if str(path) else DEFAULT_PATH

    def datasets(self) -> tuple[str, ...]:
        return PURCHASE_DATASETS

    @cached_property
    def _purchases(self) -> pd.DataFrame:
        import pandas as pd

        first_line = self.path.read_text().split("\n", 1)[0].split()
        has_header = not first_line[0].isdigit()
        # The master file has 4 columns (and a header); the 1/10 sample has 5 (customer, original id, ...).
        names = ["customer_id", "day", "cds", "dollars"]
        if len(first_line) == 5:
            names = ["customer_id", "original_id", "day", "cds", "dollars"]
        raw = pd.read_csv(
            self.path, sep=r"\s+", header=None, names=names, skiprows=1 if has_header else 0,
            dtype={"customer_id": str, "original_id": str, "day": str, "cds": "int64", "dollars": "float64"},
        )
        raw["ordered_at"] = pd.to_datetime(raw["day"], format="%Y%m%d", utc=True)
        raw["n"] = raw.groupby(["customer_id", "day"]).cumcount() + 1
        raw["order_id"] = raw["customer_id"] + "-" + raw["day"] + "-" + raw["n"].astype(str)
        return raw

    def tables(self) -> dict[str, pd.DataFrame]:
        """All three datasets, typed, in reference columns."""
        import pandas as pd

        p = self._purchases
        first = p.groupby("customer_id", as_index=False)["ordered_at"].min()
        customers = pd.DataFrame({
            "customer_id": first["customer_id"], "email": None, "first_name": None, "phone": None,
            "country": "US", "time_zone": None, "accepts_marketing": False, "accepts_sms": False,
            "created_at": first["ordered_at"], "updated_at": first["ordered_at"],
        })
        orders = pd.DataFrame({
            "order_id": p["order_id"], "customer_id": p["customer_id"], "ordered_at": p["ordered_at"],
            "status": "delivered", "shipped_at": None, "delivered_at": None,
            "total_amount": p["dollars"].round(2), "currency": "USD", "discount_code": None,
            "updated_at": p["ordered_at"],
        })
        items = pd.DataFrame({
            "order_id": p["order_id"], "line_no": 1, "sku": "CDNOW-CD", "product_name": "Compact discs",
            "quantity": p["cds"], "unit_price": (p["dollars"] / p["cds"]).round(2), "updated_at": p["ordered_at"],
        })
        return {"customers": customers, "orders": orders, "order_items": items}

    def read(self, dataset: str, window: Window, batch_rows: int) -> Iterator[pd.DataFrame]:
        import pandas as pd

        if dataset not in self.datasets():
            return
        table = self.tables()[dataset]
        change = table[CHANGE_COLUMN[dataset]]
        keep = change <= pd.Timestamp(window.until)
        if window.since is not None:
            keep &= change > pd.Timestamp(window.since)
        selected = table[keep]
        for start in range(0, len(selected), batch_rows):
            chunk = selected.iloc[start : start + batch_rows]
            yield _as_text(chunk)[list(SOURCE_COLUMNS[dataset])]


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            out[column] = values.dt.strftime("%Y-%m-%dT%H:%M:%S%z").where(values.notna(), None)
        else:
            out[column] = values.map(lambda v: None if v is None or v != v else str(v))
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)
