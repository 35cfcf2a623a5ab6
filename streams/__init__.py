"""orderflow's stream processor, one package per role (README, "Architecture")."""
