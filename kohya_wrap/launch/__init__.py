"""Processes: the one way kohya-wrap starts one (process), the training command (command) and what
sd-scripts' output means (events)."""
