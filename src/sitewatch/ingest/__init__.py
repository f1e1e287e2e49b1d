"""Ingest: files, folders and STAC into scenes, and scenes onto site grids as observations."""
