"""Embedded catalogs: ``default.csv`` and ``neuron_batched.csv`` are written by ``python -m
infaas_sim.catalogs.generate_default`` from ``cpu_measured.csv`` (``python -m
infaas_sim.catalogs.measure_cpu``) and the modelled accelerator rows; docs/catalog.md."""
