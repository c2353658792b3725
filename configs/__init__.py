"""Experiment configs: ``get_config(arg)`` files, run as ``--config configs/<file>.py:<arg>``."""
