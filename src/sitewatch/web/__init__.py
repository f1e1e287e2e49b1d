"""``sitewatch serve``: the analyst's workbench, a small web app over the library.

:func:`sitewatch.web.app.create_app` builds it: JSON under ``/api`` (every geometry WGS84 GeoJSON,
every date ISO 8601), thin HTML pages whose scripts fetch that JSON, map tiles
(:mod:`sitewatch.web.tiles`) and the package's own static files. :mod:`sitewatch.web.security`
holds every check a request passes (host, token, CSRF, body size, response headers). Nothing here
is imported by the library.
"""
