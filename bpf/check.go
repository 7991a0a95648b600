package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Capabilities boxtap needs, with why.
var requiredCaps = []struct {
	bit  int
	name string
	why  string
}{
	{unix.CAP_BPF, "CAP_BPF", "to load eBPF programs and maps"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "to read the sending task and the device from the kernel"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "to attach cgroup_skb programs"},
}

// RequiredCapabilities names the capabilities CheckSystem requires.
func RequiredCapabilities() []string {
	names := make([]string, len(requiredCaps))
	for i, c := range requiredCaps {
		names[i] = c.name
	}
	return names
}

// CheckSystem reports, in one line naming the cause and the fix, the first
// thing missing for boxtap to run: privileges, BTF, or kernel features.
func CheckSystem() error {
	if missing := missingCaps(); len(missing) > 0 {
		return fmt.Errorf("missing privilege: %s; run boxtap as root or grant it %s",
			strings.Join(missing, ", "), strings.Join(RequiredCapabilities(), "+"))
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("the kernel has no BTF (/sys/kernel/btf/vmlinux: %v); boxtap needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, Linux 6.3 or later", errors.Unwrap(err))
	}
	for _, m := range []struct {
		typ  ebpf.MapType
		what string
	}{
		{ebpf.RingBuf, "BPF ring buffers (Linux 5.8)"},
		{ebpf.SkStorage, "socket-local storage (Linux 5.2)"},
	} {
		if err := features.HaveMapType(m.typ); err != nil {
			return fmt.Errorf("the kernel lacks %s: %v; upgrade to Linux 6.3 or later", m.what, err)
		}
	}
	if err := features.HaveProgramType(ebpf.CGroupSKB); err != nil {
		return fmt.Errorf("the kernel lacks cgroup_skb programs: %v; upgrade to Linux 6.3 or later", err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("the kernel's BTF (/sys/kernel/btf/vmlinux) is unreadable: %v; boxtap needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, Linux 6.3 or later", err)
	}
	// The programs read the kernel's sk_buff (its device and socket)
	// through this kfunc.
	if _, err := spec.AnyTypeByName("bpf_cast_to_kern_ctx"); err != nil {
		return fmt.Errorf("the kernel lacks the kfunc bpf_cast_to_kern_ctx (added in Linux 6.2); upgrade to Linux 6.3 or later")
	}
	return nil
}

func missingCaps() []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return []string{fmt.Sprintf("capabilities unreadable (%v)", err)}
	}
	var missing []string
	for _, c := range requiredCaps {
		if data[c.bit/32].Effective&(1<<(uint(c.bit)%32)) == 0 {
			missing = append(missing, c.name+" ("+c.why+")")
		}
	}
	return missing
}
