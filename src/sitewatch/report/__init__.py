"""Reports: the self-contained HTML evidence of what changed at a site, and when."""

from sitewatch.report.html import render_report

__all__ = ["render_report"]
