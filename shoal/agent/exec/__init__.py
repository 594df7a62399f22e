"""The exec task runtime: a task is a host program in its own netns on the node's bridge.

`runtime.ExecRuntime` is the interface the agent uses; `logs` reads what tasks printed;
`ipam` (one level up) hands out the task addresses. A per-task shim (`shim`) owns each
program, so tasks outlive the daemon and a restarted daemon adopts them.

Nothing is re-exported here on purpose: `python -m shoal.agent.exec.shim` imports this
package, and the shim (one per task, started on every task start) must not pay for
pyroute2, asyncio or even `typing`. A unit test holds the shim's imports to the stdlib.
"""

__all__: list[str] = []
