"""The built-in dashboard at ``/ui`` (docs/dashboard.md): ``create_ui`` builds the mounted app."""

from shipyard.api.ui.app import create_ui

__all__ = ["create_ui"]
