"""experiment: running things and recording them. Owns the `mosgym run` command (request
resolution, the runner over seeds, episode recording), MLflow tracking, checkpoints and exact
resume, signals and faults, sweeps (sequential or Ray), the leader/follower launch under
torchrun, the end-of-run summary, and training agents in the simulator (`mosgym sim2real`).
May import every stage below it (agents, envs, sim, rewards, learner, data, records, config);
never analysis.
"""
