"""Rendering: the Jinja2 environment (autoescaped) and the few helpers every template uses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import Response

from shipyard.api.ui.session import CSRF_FIELD, Viewer

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

NAV = (
    ("overview", "/ui/", "Overview"),
    ("runs", "/ui/runs", "Runs"),
    ("traces", "/ui/traces", "Traces"),
    ("sessions", "/ui/sessions", "Sessions"),
    ("tasks", "/ui/tasks", "Tasks"),
    ("workers", "/ui/workers", "Workers"),
    ("costs", "/ui/costs", "Costs"),
    ("audit", "/ui/audit", "Audit"),
    ("keys", "/ui/keys", "Keys"),
)


def link_maker(viewer: Viewer | None) -> Callable[..., str]:
    """``u("/ui/runs", agent="echo")``: a dashboard link that keeps the viewed tenant."""

    def link(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if viewer is not None and viewer.tenant_id != viewer.principal.tenant_id:
            query.setdefault("tenant", viewer.tenant_id)
        return path + ("?" + urlencode(query) if query else "")

    return link


def when(at: datetime | None) -> str:
    if at is None:
        return "—"
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pretty(value: Any) -> str:
    """A value as indented JSON (templates show arguments, results and messages this way)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def millis(start: datetime, end: datetime | None) -> str:
    if end is None:
        return "—"
    return f"{(end - start).total_seconds() * 1e3:.0f} ms"


REDACTION = re.compile(
    r"\[[A-Z][A-Z0-9_]*(?::[0-9a-f]{12})?\]"  # redact, hash: [EMAIL_ADDRESS], [IBAN:1a2b...]
    r"|&lt;[A-Z][A-Z0-9_]*_\d+&gt;"  # pseudonymize: <PERSON_1> (escaped)
    r"|\[blocked by guard\]"
    r"|\*{4,}"  # mask: one * a character
)


def redacted(value: Any) -> Markup:
    """``value`` as escaped text, each guard's marker in it shown as one (``<mark>``): what a
    guard replaced (docs/guards.md) reads as a redaction, not as what the model wrote."""
    text = str(escape(value))
    return Markup(
        REDACTION.sub(
            lambda m: f'<mark class="redacted" title="replaced by a guard">{m.group(0)}</mark>',
            text,
        )
    )


TEMPLATES.env.filters.update(when=when, pretty=pretty, redacted=redacted)
TEMPLATES.env.globals.update(NAV=NAV, CSRF_FIELD=CSRF_FIELD, millis=millis)


def page(
    request: Request, name: str, viewer: Viewer | None, *, status: int = 200, **context: Any
) -> Response:
    """Render ``name`` with the viewer, the link helper and ``context``."""
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "u": link_maker(viewer), **context},
        status_code=status,
    )
