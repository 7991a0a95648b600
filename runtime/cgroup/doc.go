// Package cgroup finds cgroup v2 (unified hierarchy) directories: where the
// hierarchy is mounted, which cgroup a process is in, what a runtime's
// cgroupsPath expands to, the cgroup ID that eBPF helpers report, and when a
// cgroup has emptied.
//
// The path in the "0::" line of /proc/PID/cgroup is relative to the
// reader's cgroup namespace root. On the host that is the hierarchy's root;
// in a pod with a private cgroup namespace, NamespaceRoot finds where the
// namespace root lies (hostPID and the host's cgroupfs needed) and Resolve
// turns such paths ("/../...") into paths under the mount. Dir checks that
// the resulting directory exists.
package cgroup
