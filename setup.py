"""timedistill_jax: TimeDistill (arXiv 2502.15016) in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="timedistill_jax",
    version="0.1.0",
    description="TimeDistill: distilling long-term forecasters into an MLP, in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["timedistill_jax", "timedistill_jax.*"]),
    install_requires=[
        "jax>=0.5.0",
        "flax>=0.10.0",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.11.0",
        "numpy>=1.24",
        "pandas>=2.0",
        "ml-collections>=0.1.1",
        "absl-py>=1.4",
        "tqdm>=4.60",
        # jax.export serialization (timedistill_jax.export, timedistill_jax.serving)
        "flatbuffers>=24.3",
    ],
    extras_require={
        # wheel: tests/test_install.py builds the package without build isolation (offline).
        "test": ["pytest>=7", "pytest-xdist>=3.0", "chex>=0.1.87", "hypothesis>=6.0",
                 "wheel>=0.40"],
        "torch": ["torch>=2.0"],
        # --format onnx of timedistill_jax.export: torch's dynamo exporter needs onnxscript;
        # onnxruntime checks the written model (docs/deploy.md).
        "onnx": ["torch>=2.6", "onnx>=1.17", "onnxscript>=0.2", "onnxruntime>=1.20"],
        "plots": ["matplotlib>=3.7"],
        # TensorBoard event files without TensorFlow (timedistill_jax/events.py)
        "tensorboard": ["tensorboardX>=2.6"],
    },
    entry_points={"console_scripts": ["timedistill=timedistill_jax.__main__:_entry"]},
)
