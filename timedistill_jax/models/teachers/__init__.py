"""Teacher models, one file each, registered by lowercase name."""

# Importing a teacher's module registers it.
from timedistill_jax.models.teachers import itransformer  # noqa: F401
from timedistill_jax.models.teachers import moderntcn  # noqa: F401
from timedistill_jax.models.teachers import patchtst  # noqa: F401
from timedistill_jax.models.teachers import timemixer  # noqa: F401
from timedistill_jax.models.teachers import autoformer  # noqa: F401
from timedistill_jax.models.teachers import fedformer  # noqa: F401
from timedistill_jax.models.teachers import micn  # noqa: F401
from timedistill_jax.models.teachers import timesnet  # noqa: F401
