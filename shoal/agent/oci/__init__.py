"""The OCI task runtime (work in progress): tasks of an image run as runc containers.

Done so far: the pure helpers the spec builder needs — `user` (Docker's User resolution
against an image's /etc/passwd and /etc/group) and `hostname` (swarm's ContainerSpec
templates). Pure: no I/O, no clock. The spec builder, bundle/overlay setup and the runc
driver behind the TaskController are not written yet (see docs/design/oci-runtime.md).
"""
