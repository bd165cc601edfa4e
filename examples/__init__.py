"""Example agents served by ``make run``."""
