"""Watching a running swarm: docker's event stream, Prometheus metrics and a dashboard.

events     store changes as Docker's swarm event messages, Docker's event filters (pure)
metrics    a dedicated prometheus-client CollectorRegistry per daemon, read at scrape time
dashboard  the read-only page and the aggregate JSON it polls (`/`, `/dashboard.json`)
server     the `--metrics-addr` HTTP listener serving all three

Invariants: nothing here writes to the store; reading is done from `Store.view()`,
`Store.recent` (the bounded ring of past events) and `Store.watch()` queues only.
"""
