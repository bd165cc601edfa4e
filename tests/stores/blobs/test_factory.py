"""The composition root picks the blob backend by URL scheme, one store per region."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.app import open_blob_stores
from shipyard.config import load_settings
from shipyard.errors import ConfigError
from shipyard.stores.blobs.local import LocalBlobStore
from shipyard.stores.blobs.s3 import S3BlobStore


def test_the_default_is_a_folder_in_the_home(tmp_path: Path) -> None:
    blobs = open_blob_stores(load_settings(home=tmp_path))
    [store] = blobs.stores.values()
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "blobs" / "default").absolute()


def test_s3_regions_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_BLOB_URL", "s3://acme?account=111122223333&endpoint=http://a")
    monkeypatch.setenv("SHIPYARD_BLOB_REGION", "eu-west-1")
    monkeypatch.setenv("SHIPYARD_BLOB_REGIONS", '{"us-east-2": "http://b"}')
    blobs = open_blob_stores(load_settings(home=tmp_path))
    found = {r: s for r, s in blobs.stores.items() if isinstance(s, S3BlobStore)}
    assert {r: (s.options.bucket, s.options.endpoint) for r, s in found.items()} == {
        "eu-west-1": ("acme-111122223333-eu-west-1-an", "http://a"),
        "us-east-2": ("acme-111122223333-us-east-2-an", "http://b"),
    }
    assert blobs.default_region == "eu-west-1"


@pytest.mark.parametrize(
    ("url", "region", "says"),
    [
        ("gs://bucket", "eu-a", "['file', 's3']"),
        ("s3://no-account", "eu-a", "account"),
        ("s3://acme?account=1", "Bad Region", "invalid region"),
        ("file://", "eu-a", "file:///path"),
        ("file:///tmp/x", "../up", "invalid region"),
    ],
)
def test_bad_urls_and_regions_are_config_errors(
    tmp_path: Path, url: str, region: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        open_blob_stores(load_settings(home=tmp_path, blob_url=url, blob_region=region))
    assert says in str(caught.value)
