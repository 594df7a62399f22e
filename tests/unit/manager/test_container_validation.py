"""Container parts of a service spec: mounts, resources, ulimits, sysctls, caps (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shoal.api.codec import decode_body
from shoal.api.types import ServiceSpec
from shoal.errors import InvalidArgument
from shoal.manager.controlapi.validation import validate_service_spec


def spec(container: dict[str, Any] | None = None, resources: Any = None) -> ServiceSpec:
    task: dict[str, Any] = {"ContainerSpec": {"Image": "busybox", **(container or {})}}
    if resources is not None:
        task["Resources"] = resources
    return decode_body(json.dumps({"Name": "web", "TaskTemplate": task}).encode(), ServiceSpec)


MB = 1024 * 1024


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"Mounts": [{"Type": "bind", "Target": "/a"}]},
         'invalid mount config for type "bind": field Source must not be empty'),
        ({"Mounts": [{"Type": "tmpfs", "Source": "x", "Target": "/a"}]},
         'invalid mount config for type "tmpfs": field Source must not be specified'),
        ({"Mounts": [{"Type": "volume", "Source": "v", "Target": "rel"}]},
         "invalid mount target, must be an absolute path: rel"),
        ({"Mounts": [{"Type": "npipe", "Source": "v", "Target": "/a"}]}, "mount type unknown"),
        ({"Mounts": [{"Type": "volume", "Target": "/a"}, {"Type": "tmpfs", "Target": "/a/"}]},
         "mount target /a/ is used more than once"),
        ({"Mounts": [{"Type": "bind", "Source": "/s", "Target": "/a",
                      "VolumeOptions": {"NoCopy": True}}]},
         "field VolumeOptions must not be specified"),
        ({"Ulimits": [{"Name": "files", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: files"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 9, "Hard": 1}]},
         "soft limit must be less than or equal to hard limit: 9 > 1"),
        ({"Sysctls": {"bad key": "1"}}, "invalid sysctl key"),
        ({"CapabilityAdd": ["CAP_FLY"]}, "unknown capability: 'CAP_FLY'"),
        ({"OomScoreAdj": 1001}, "range for oom score adj is [-1000, 1000]"),
    ],
)  # fmt: skip
def test_bad_container_parts_are_refused(container: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_service_spec(spec(container))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"Limits": {"MemoryBytes": 5 * MB}}, "Minimum memory limit allowed is 6MB"),
        ({"Reservations": {"MemoryBytes": 1 * MB}}, "Must be at least 4MiB"),
        ({"Limits": {"NanoCPUs": -1}}, "invalid cpu value -1e-09: Must be at least 0.001"),
        ({"Limits": {"Pids": -5}}, "invalid pids limit -5"),
        ({"Limits": {"MemoryBytes": 8 * MB}, "Reservations": {"MemoryBytes": 16 * MB}},
         "Minimum memory limit can not be less than memory reservation limit"),
        ({"Limits": {"NanoCPUs": 10**9}, "Reservations": {"NanoCPUs": 2 * 10**9}},
         "cpu reservation 2 can not be more than the cpu limit 1"),
    ],
)  # fmt: skip
def test_bad_resources_are_refused(resources: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_service_spec(spec(resources=resources))
    assert message in str(err.value)


def test_good_container_parts_pass() -> None:
    validate_service_spec(spec(
        {"Mounts": [{"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": True},
                    {"Type": "volume", "Source": "v", "Target": "/v"},
                    {"Type": "volume", "Target": "/anon"},
                    {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": MB}}],
         "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}],
         "Sysctls": {"net.core.somaxconn": "1024"}, "CapabilityAdd": ["CAP_NET_ADMIN"],
         "CapabilityDrop": ["ALL"], "OomScoreAdj": -500},
        {"Limits": {"NanoCPUs": 10**9, "MemoryBytes": 32 * MB, "Pids": 10},
         "Reservations": {"NanoCPUs": 10**8, "MemoryBytes": 16 * MB}},
    ))  # fmt: skip


def test_hostname_template_is_checked_at_create() -> None:
    validate_service_spec(spec({"Hostname": "{{.Service.Name}}-{{.Task.Slot}}"}))
    with pytest.raises(InvalidArgument, match="can't evaluate field Slo in type"):
        validate_service_spec(spec({"Hostname": "{{.Task.Slo}}"}))
