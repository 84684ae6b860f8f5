from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import dbutil


@pytest.fixture
def db() -> Iterator[dbutil.TestDatabase]:
    """A fresh, fully migrated database for one test, dropped afterwards."""
    database = dbutil.new_database()
    try:
        yield database
    finally:
        dbutil.drop(database)


@pytest.fixture(scope="module")
def module_db() -> Iterator[dbutil.TestDatabase]:
    """A fresh database shared by the tests of one module."""
    database = dbutil.new_database()
    try:
        yield database
    finally:
        dbutil.drop(database)
