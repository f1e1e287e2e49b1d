"""Safe reading of hostile rasters, world files, band folders and STAC documents."""
