"""Reports: the self-contained HTML evidence of what changed at a site, and when."""

from sitewatch.report.html import render_report
from sitewatch.report.site import write_site_report

__all__ = ["render_report", "write_site_report"]
