"""Teacher models, one file each, registered by lowercase name."""

# Importing a teacher's module registers it.
from timedistill_jax.models.teachers import itransformer  # noqa: F401
