"""The seeded synthetic demo site: dated scenes of one compound with scripted, recorded changes."""

from sitewatch.demo.generator import (
    DATES,
    DemoBuilding,
    DemoEvent,
    DemoObject,
    DemoScene,
    DemoSite,
    generate,
)

__all__ = ["DATES", "DemoBuilding", "DemoEvent", "DemoObject", "DemoScene", "DemoSite", "generate"]
