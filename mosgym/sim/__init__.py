"""sim: the simulator. Owns the learning-dynamics model of how per-skill dev loss falls with the
examples seen (dynamics), its parameters, the SimLearner that plays the Learner protocol (so
MoSSim-v0 is the real env class over a simulated learner), the batched simulator and its SB3
VecEnv, fitting the parameters to logged real runs (fit, `mosgym calibrate`) and the fidelity
check (`mosgym fidelity`). May import records, rewards, learner.base, data, config and errors;
never envs, agents or experiment (training agents in the simulator is an experiment:
mosgym.experiment.sim2real).
"""
