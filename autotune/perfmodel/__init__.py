"""A performance model of one TF Serving server: `profile` measures batch costs, `simulate` predicts a config."""
