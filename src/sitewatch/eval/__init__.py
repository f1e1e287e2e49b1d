"""Scoring sitewatch on labelled data: the ``sitewatch eval`` commands' library side."""
