"""The `shoal` command line: a docker-like client of the Engine API, plus `shoal daemon`.

It sends exactly the calls and bodies the docker CLI sends (see
the reference docker-cli-calls.md), so it works against any Docker-compatible swarm API,
and prints what docker prints. Layout:

    main.py            root group (-H/--host, --version, errors -> one line, exit 1)
    context.py         CliContext: the client factory, clocks, TTY, environment (injectable)
    swarm.py node.py service.py service_view.py system.py daemon.py   one module per resource
    service_flags.py   create/update flags declared once, parsed like docker's
    spec.py spec_update.py   ServiceSpec bodies from flags (pure)
    opts.py durations.py     flag value parsers (pure)
    format.py templates.py template_funcs.py tasks.py pretty.py   output (pure)
    progress.py        convergence display and polling; logs.py   multiplexed log streams

Tests inject a fake daemon with `CliRunner().invoke(cli, args,
obj=CliContext(client_factory=lambda host: client))`.
"""
