from __future__ import annotations

import pytest

from tests.smarketing_tasks.outreach.helpers import Warehouse


@pytest.fixture
def shop(warehouse) -> Warehouse:
    return Warehouse(warehouse)
