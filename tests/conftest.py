"""Settings shared by every test session."""

import os

# hermetic: a daemon under test never contacts a registry outside the lab (the docker CLI
# asks for /distribution/IMAGE/json on every service create; busybox would mean docker.io)
# (198.18.0.3:5001: the lab registry host's token-auth registry)
os.environ.setdefault(
    "SHOAL_ALLOWED_REGISTRIES", "198.18.0.3:5000,198.18.0.3:5001,127.0.0.1:15000,localhost"
)
