"""The test detectors, registered for every guard test."""

import tests.guard.detectors  # noqa: F401
