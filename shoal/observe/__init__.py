"""Watching a running swarm: docker's event stream, Prometheus metrics and a dashboard.

events     store changes as Docker's swarm event messages, Docker's event filters (pure)
metrics    a dedicated prometheus-client CollectorRegistry per daemon, read at scrape time
dashboard  the read-only page and the aggregate JSON it polls (`/`, `/dashboard.json`)
server     the `--metrics-addr` HTTP listener serving all three

Invariants: nothing here writes to the store or changes the node; reading is done from
`Store.view()`, `Store.recent` (the bounded ring of past events) and `Store.watch()` queues,
the components' own counters and latency records, and the data plane's `traffic()` (at most
once a second, awaited by the scrape handler).
"""
