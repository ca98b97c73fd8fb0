"""benchmark: which algorithm schedules data best? The protocol on top of every other stage.

Owns: suites (a real env config and its calibrated simulator, with the same skills in the same
order), one hyperparameter entry per algorithm and suite (agents/bench/<suite>/<algo>.yaml,
tuned in the simulator with Optuna), training in the simulator under a budget of simulated env
steps with learning curves on held-out simulator seeds, domain randomisation, deployment of the
frozen policies on the real env as ordinary `mosgym run` runs, and the leaderboard (IQM with
stratified bootstrap intervals, probability of improvement, performance profiles, sim-to-real
gap) read back from MLflow alone.

May import every stage below it (errors, config, records, data, learner, rewards, sim, envs,
agents, experiment, analysis); nothing but the CLI entry points imports it.
"""
