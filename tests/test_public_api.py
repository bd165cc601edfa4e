"""``shipyard/__init__.py`` re-exports what users import, and only that."""

from __future__ import annotations

import shipyard


def test_all_names_resolve() -> None:
    for name in shipyard.__all__:
        assert hasattr(shipyard, name), name


def test_every_public_attribute_is_in_all() -> None:
    public = {
        name
        for name, value in vars(shipyard).items()
        if not name.startswith("_")
        and not getattr(value, "__path__", None)
        and getattr(value, "__module__", "").startswith("shipyard")
    }
    assert public <= set(shipyard.__all__), public - set(shipyard.__all__)


def test_all_is_sorted() -> None:
    assert list(shipyard.__all__) == sorted(shipyard.__all__)
