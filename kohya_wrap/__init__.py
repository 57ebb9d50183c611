"""kohya-wrap: a validated, reproducible command-line path from photos to a LoRA trained by kohya's sd-scripts."""

__version__ = "0.1.0"
