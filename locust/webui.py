"""Extra routes and tabs in Locust's web UI, the way Locust's own `examples/extend_web_ui.py` does it.

`add_route` puts a view on the UI's Flask app behind the UI's own authentication (`add_json_route` for a
JSON answer): the one way the locustfile adds a route. The UI draws a tab for each entry of the template's
`extended_tabs`, with the table structure from `extended_tables`, and fills it from `extended_stats` in
the `/stats/requests` answer it polls every couple of seconds. Nothing here fires request events, so
Locust's own numbers stay as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, request

_TABS_KEY = "loadlab_tabs"  # in Flask's app.extensions, so the hook is installed once per app


def add_route(web_ui: Any, path: str, view: Callable[[], Response]) -> None:
    """GET `path` answered by `view`, behind --web-login like Locust's own pages."""
    web_ui.app.add_url_rule(
        path, endpoint=f"loadlab:{path}", view_func=web_ui.auth_required_if_enabled(view), methods=["GET"]
    )


def add_json_route(web_ui: Any, path: str, data: Callable[[], Any]) -> None:
    add_route(web_ui, path, lambda: jsonify(data()))


@dataclass(frozen=True)
class Tab:
    key: str
    title: str
    # (row key, column title); keys without underscores, since the UI camel-cases them.
    columns: tuple[tuple[str, str], ...]
    rows: Callable[[], list[dict[str, Any]]]


def add_tab(web_ui: Any, tab: Tab) -> None:
    args = web_ui.template_args
    args.setdefault("extended_tabs", []).append({"title": tab.title, "key": tab.key})
    args.setdefault("extended_tables", []).append(
        {"key": tab.key, "structure": [{"key": k, "title": t} for k, t in tab.columns]}
    )
    app = web_ui.app
    tabs: list[Tab] | None = app.extensions.get(_TABS_KEY)
    if tabs is not None:
        tabs.append(tab)
        return
    tabs = app.extensions[_TABS_KEY] = [tab]

    @app.after_request
    def add_extended_stats(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200 or not response.is_json:
            return response
        body = response.get_json()
        body["extended_stats"] = [{"key": t.key, "data": t.rows()} for t in tabs]
        response.set_data(json.dumps(body))
        return response
