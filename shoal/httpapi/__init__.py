"""The local API: a Docker Engine API (1.47) compatible subset over aiohttp.

Paths are served both versioned (`/v1.24` .. `/v1.47`) and unversioned. Errors are
`{"message": ...}` with Content-Type exactly `application/json` (the docker CLI compares the
header string), and status codes as dockerd gives them.
"""
