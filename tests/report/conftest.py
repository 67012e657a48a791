"""A prepared directory with something in every section of report.html: real conversations (with
duplicates), a test split, bad records (rejected), rows too long for --max-length (dropped)."""

from __future__ import annotations

import pytest
from doctor_assets import prepared, report_rows


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory):
    return prepared(tmp_path_factory.mktemp("report"), report_rows(), test_size=0.1, max_length=256,
                    truncation="drop")
