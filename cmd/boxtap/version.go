package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/boxtap/boxtap/bpf"
	"golang.org/x/sys/unix"
)

type versionCmd struct{}

func (versionCmd) Run(ctx context.Context) error {
	fmt.Printf("boxtap %s\n", versionString())
	fmt.Printf("kernel: %s\n", kernelRelease())
	if err := bpf.CheckSystem(); err != nil {
		fmt.Printf("kernel features: not usable: %v\n", err)
	} else {
		fmt.Println("kernel features: ok (BTF, ring buffer, socket storage, cgroup_skb, bpf_cast_to_kern_ctx)")
	}
	return nil
}

// versionString is the version stamped by make release (-X main.version), else the module
// version the go command recorded: the one `go install .../cmd/boxtap@v1.2.3` fetched, or for
// a build in a git checkout a pseudo-version naming the commit (v0.0.0-<time>-<commit>).
func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}
