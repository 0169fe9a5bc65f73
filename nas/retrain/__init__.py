"""Retraining (`nas train`): cells trained to convergence per seed, what can be retrained, and a run's top K."""
