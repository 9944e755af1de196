"""Embedded catalogs. ``default.csv`` is written by ``python -m infaas_sim.catalogs.generate_default``."""
