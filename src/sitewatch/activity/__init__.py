"""Activity: how busy a site and its zones are on each date, against their own normal level.

:mod:`sitewatch.activity.index` measures an activity index per usable observation (the share of
clear pixels departing from the site's background) for the whole site and each zone, beside the
objects counted per class by the detection stage;
:mod:`sitewatch.activity.series` judges any dated series against its past: rolling robust
baseline, anomaly flags with scores, and change-points.
"""

from sitewatch.activity.index import (
    INDEX,
    VEHICLES,
    ActivityIndex,
    ActivitySeries,
    IndexSettings,
    SiteActivity,
    SkippedDate,
    activity_index,
    series_of,
    site_activity,
)
from sitewatch.activity.series import BaselineSettings, ChangePoint, Point, SeriesAnalysis, analyse

__all__ = [
    "INDEX",
    "VEHICLES",
    "ActivityIndex",
    "ActivitySeries",
    "BaselineSettings",
    "ChangePoint",
    "IndexSettings",
    "Point",
    "SeriesAnalysis",
    "SiteActivity",
    "SkippedDate",
    "activity_index",
    "analyse",
    "series_of",
    "site_activity",
]
