"""Programs that run as tasks: `whoami` (which task answered?) for demos, tests, benchmarks."""
