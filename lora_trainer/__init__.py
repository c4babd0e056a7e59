"""Train kohya-compatible LoRAs for Stable Diffusion, inside A1111 WebUI or from the command line."""

__version__ = "0.1.0"
