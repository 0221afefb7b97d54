"""The store: autotune's tables (jobs, trials, Pareto snapshots) beside Optuna's, in one database."""
