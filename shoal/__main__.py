"""`python -m shoal`: the shoal command line."""

from shoal.cli.main import main

main()
