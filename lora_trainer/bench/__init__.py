"""`python -m lora_trainer bench`: how fast training runs, on this machine, for a given setup."""
