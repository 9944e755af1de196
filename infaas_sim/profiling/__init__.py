"""Real variants: a built-in model family, variant generation and profiling into catalog rows.

``python -m infaas_sim.profiling --out DIR`` generates and profiles the built-in family and
writes ``DIR/catalog.csv`` (the simulator's schema plus the columns real executors need).
"""
