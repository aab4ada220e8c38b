"""Continual learning: scenarios, learners, the task runner and BinPlay (thesis ch.7–8)."""
