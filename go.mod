module github.com/boxtap/boxtap

go 1.26

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/aquasecurity/tracee/types v0.0.0-20251205142631-7dc44bdb801c // indirect
	github.com/cilium/ebpf v0.22.0 // indirect
	github.com/docker/docker v28.5.2+incompatible // indirect
	github.com/opencontainers/runtime-spec v1.3.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
)
