"""Test setup: 8 fake CPU devices, so sharded code is tested against 1 device."""

import os
import pathlib

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The real datasets beside the checkout; skip with a reason when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real datasets not found at {SHARED_DATA} (need ../shared/data)")
  return SHARED_DATA


@pytest.fixture
def demo_as_lcrec(tmp_path) -> pathlib.Path:
  """The tiny configs' synthetic demo data (240 users, 120 items) written in LC-Rec's json format."""
  import json  # noqa: PLC0415
  from jaxrec.data import synthetic  # noqa: PLC0415 (after the XLA flags above)
  demo = synthetic.make_demo(240, 120, 0)
  folder = tmp_path / "demo"
  folder.mkdir()
  (folder / "Demo.item.json").write_text(json.dumps(dict(zip(demo.item_ids, demo.item_fields))))
  (folder / "Demo.inter.json").write_text(json.dumps(
      {u: [int(demo.item_ids[i]) for i in s] for u, s in zip(demo.user_ids, demo.sequences)}))
  return folder
