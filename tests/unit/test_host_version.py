"""What the pack says at load time about the ComfyUI it finds (supported range: 0.3.64 and newer)."""
from __future__ import annotations

import pytest

from dreamoving.host_version import OLDEST_SUPPORTED, unsupported_host_message, version_tuple


def test_version_tuple_reads_release_numbers():
    assert version_tuple("0.33.0") == (0, 33, 0)
    assert version_tuple("v0.3.64-5-g2d4970ff") == (0, 3, 64)
    assert version_tuple("0.46") == (0, 46)
    assert version_tuple("nightly") is None


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, "0.3.65", "0.33.0", "0.46.1", "1.0.0"])
def test_supported_hosts_get_no_warning(version):
    assert unsupported_host_message(version) is None


@pytest.mark.parametrize("version", ["0.3.63", "0.3.10", "0.2.7"])
def test_older_hosts_are_named_with_the_oldest_supported(version):
    message = unsupported_host_message(version)
    assert f"this ComfyUI is {version}, older than 0.3.64" in message and "update ComfyUI" in message


@pytest.mark.parametrize("version", [None, "", "nightly"])
def test_unknown_versions_say_so(version):
    assert "could not tell this ComfyUI's version" in unsupported_host_message(version)
