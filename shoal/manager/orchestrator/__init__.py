"""The orchestrator: services -> tasks (replicated slots, global nodes), rolling updates and
rollbacks, restarts, and the reaper.

Invariants: one pass per commit decides from the store alone (a new leader resumes where the
old one left off); the update and restart decisions (update.py, restart.py) are pure, `now`
passed in; start-first never shuts an old task down before its replacement is `running`.
"""
