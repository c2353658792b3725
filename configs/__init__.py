"""Runnable ``get_config`` files (``--config configs/<file>.py:<arg>``) over the package's
``timedistill_jax.configs``; ``--config student:<arg>`` (a bare name) runs the same."""
