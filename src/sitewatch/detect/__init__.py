"""Objects in observations: search by description (colour and size), watch rules, and the
detections table every object finder shares (learned detectors add their classes to it)."""

from sitewatch.detect.colour import COLOURS, colour_range, name_of
from sitewatch.detect.find import FindResult, Found, Query, Span, find_objects, parse_span, search
from sitewatch.detect.rules import RuleMatch, evaluate_rules, save_rule

__all__ = [
    "COLOURS",
    "FindResult",
    "Found",
    "Query",
    "RuleMatch",
    "Span",
    "colour_range",
    "evaluate_rules",
    "find_objects",
    "name_of",
    "parse_span",
    "save_rule",
    "search",
]
