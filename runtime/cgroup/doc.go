// Package cgroup finds cgroup v2 (unified hierarchy) directories: where the
// hierarchy is mounted, which cgroup a process is in, what a runtime's
// cgroupsPath expands to, the cgroup ID that eBPF helpers report, and when a
// cgroup has emptied.
//
// Assumption: boxtap runs in the host's cgroup namespace. The path in the
// "0::" line of /proc/PID/cgroup is relative to the reader's cgroup namespace
// root, so inside a nested container it would not name a directory under the
// mount. Dir checks that the resulting directory exists, which catches most
// such setups with an error that says so.
package cgroup
