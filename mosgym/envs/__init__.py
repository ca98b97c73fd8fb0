"""Gymnasium environments: MixtureOfSkills (real fine-tuning) and MoSSim (simulator)."""
