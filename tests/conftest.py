"""Shared fixtures. Real data comes from $IIRG_DATA_DIR (default: ../shared/data next to the repo);
tests that need it skip, saying so, where it is absent. Nothing from it is ever committed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The machine is offline: fail fast instead of waiting on the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["neo4j_support"]  # neo4j_config / store_config fixtures (testcontainers)

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("IIRG_DATA_DIR", REPO.parent / "shared" / "data"))


def dataset_dir(name: str) -> Path:
    """The folder of one shared dataset, or skip the test with the reason."""
    path = data_dir() / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (set IIRG_DATA_DIR to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return dataset_dir("ml-100k")


@pytest.fixture(scope="session")
def office_dir() -> Path:
    return dataset_dir("amazon-office")


@pytest.fixture(scope="session")
def yelp_dir() -> Path:
    return dataset_dir("yelp")
