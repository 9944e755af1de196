"""The capacity planner behind ``infaas-plan``: which policy, cluster and knobs meet the goals
at the least cost, found by running candidates in simulation over several seeds.

- :mod:`.settings`: the ``plan`` section (goals, search budget, space restrictions), validated;
- :mod:`.space`: each policy's knobs and the cluster choices, and what a candidate's config is;
- :mod:`.evaluate`: running candidates x seeds in parallel (joblib), mean and 95% t-interval;
- :mod:`.search`: a grid for small spaces, Optuna's multi-objective search otherwise;
- :mod:`.choose`: the Pareto front, the recommendation, each policy's runner-up, the binding goal;
- :mod:`.output`: tables, the figure, ``plan.md`` and the ready-to-run ``recommended.yaml``;
- :mod:`.verify`: ``--verify``, the recommendation replayed in real mode beside simulation.
"""
