"""The oci task runtime: a task whose image is an OCI reference runs as a runc container.

`spec` builds runc's config.json from the task and the image config (pure: no I/O, Docker's
rules for entrypoint/cmd, env, user, capabilities, masked paths, resources); `users`
resolves a user name against the image's /etc/passwd and /etc/group text (pure);
`bundle` makes and removes the per-task bundle (overlayfs root over the image's read-only
rootfs, hosts/hostname/resolv.conf); `runtime.OciRuntime` extends the exec runtime: the
same shim supervises `runc run` in the foreground, so logs, exit status and adoption after
a daemon restart work as for host programs. `user` and `hostname` (an earlier attempt's pure
helpers: User resolution, swarm's hostname templates) are not used yet.

Invariants: the image rootfs is only ever an overlay lower dir; a removed task leaves no
mount, upper dir, cgroup, runc state or netns behind; the runtime is chosen by the label
`shoal.runtime=exec` only (`is_exec_task`), never by guessing from the image name.
"""

__all__: list[str] = []
