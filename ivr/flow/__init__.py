"""Dialog flows: the YAML format (model), its loader and validator, and the engine that runs a
flow against any channel through the small contract in `channel.py`."""
