"""Runtime tests run on the real stores: the state store on SQLite and on Redis."""

from tests.stores.state.conftest import store

__all__ = ["store"]
