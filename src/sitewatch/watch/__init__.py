"""Watch rules, alerts and monitoring: saying when something happens at a site.

- :mod:`sitewatch.watch.rules`: the kinds of rule (change, activity, find), stored, listed, removed;
- :mod:`sitewatch.watch.evaluate`: each rule against the observations it has not seen, at the end
  of ``sitewatch analyze``, recording an alert where one matches;
- :mod:`sitewatch.watch.alerts`: the JSON-lines alert log, kept in step with the catalog;
- :mod:`sitewatch.watch.notify`: optional delivery by webhook and e-mail;
- :mod:`sitewatch.watch.monitor`: polling a site's sources for new scenes, then ingest, analyze, alert.
"""
