"""Recipes: a training job from a config, the demo, and (later) the thesis tables."""
