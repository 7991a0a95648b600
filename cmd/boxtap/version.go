package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

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
// version that `go install github.com/boxtap/boxtap/cmd/boxtap@v1.2.3` records, else the
// source revision of a local build.
func versionString() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" && !strings.HasPrefix(v, "v0.0.0-") {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
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
