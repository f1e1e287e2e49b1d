"""The analyst's own records on a site: annotations (marks drawn on the site or on one image), reviews
(verdicts on detected changes, kept across re-analysis) and events (dated markers on the activity chart).

Modules: :mod:`~sitewatch.review.annotations`, :mod:`~sitewatch.review.reviews`,
:mod:`~sitewatch.review.events`; the checks of the analyst's text and dates they share are in
:mod:`~sitewatch.review.text`. Import them directly: this package imports nothing on its own.
"""
