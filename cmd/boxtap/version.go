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
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = "dev-" + s.Value[:12]
			}
		}
	}
	fmt.Printf("boxtap %s\n", v)
	fmt.Printf("kernel: %s\n", kernelRelease())
	if err := bpf.CheckSystem(); err != nil {
		fmt.Printf("kernel features: not usable: %v\n", err)
	} else {
		fmt.Println("kernel features: ok (BTF, ring buffer, socket storage, cgroup_skb, bpf_cast_to_kern_ctx)")
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}
