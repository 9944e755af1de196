"""infaas-sim: model-less inference serving, simulated and real."""

__version__ = "0.1.0"
