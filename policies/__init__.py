"""Policies, one module each. Each is found through its entry point (group
``infaas_sim.policies`` in pyproject.toml) and imported when a run names it: importing this
package imports none of them (a run of one policy does not pay for the others' imports)."""
