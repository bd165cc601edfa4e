"""The composition root: the only package that names concrete backends and wires the layers
together from the settings. ``shipyard.app`` (the ``App`` users write) calls into it.

- ``backends``: URL scheme → backend class for every storage role, and opening them.
- ``keys``: the keys kept in the home folder (audit, webhook signing, dashboard sessions).
- ``security``: audit log, egress for tools and webhooks, rate limits, API keys.
- ``data``: artifacts, long-term memory, retention and erasure across the stores.
- ``services``: everything above put together into one ``Services``.
"""
