package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// hxCapBoxtap prepares `boxtap trace` as uid 0 with exactly the capabilities caps
// (setpriv drops every other one from the bounding set, so root keeps only these).
func (e *traceEnv) hxCapBoxtap(ctx context.Context, setpriv string, caps []string, args ...string) *exec.Cmd {
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + c
	}
	argv := append([]string{"--bounding-set=" + bounding, "--inh-caps=-all", "--", e.boxtap}, args...)
	return exec.CommandContext(ctx, setpriv, argv...)
}

// TestHardeningPrivileges runs boxtap trace with only CAP_BPF, CAP_PERFMON and
// CAP_NET_ADMIN (as uid 0, which still reaches the Docker socket): it must trace. Without
// any one of them it must refuse and name the missing capability.
func TestHardeningPrivileges(t *testing.T) {
	e := newTraceEnv(t)
	setpriv := hxRequireTool(t, "setpriv", "util-linux")
	c, base := e.hxServer(t, "caps")
	all := []string{"bpf", "perfmon", "net_admin"}

	t.Run("only-required", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), traceRunTimeout)
		defer cancel()
		p := itest.StartCmd(t, e.hxCapBoxtap(ctx, setpriv, all, "trace", c.Name))
		if err := p.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", c.Name, itest.ShortID(c.ID)), traceStartTimeout); err != nil {
			t.Fatal(err)
		}
		status := fmt.Sprintf("/proc/%d/status", p.PID())
		capLine := strings.TrimSpace(hxCommand(t, "", "grep", "^CapEff:", status))
		// CAP_NET_ADMIN is bit 12, CAP_PERFMON 38, CAP_BPF 39.
		if want := fmt.Sprintf("%016x", uint64(1)<<12|uint64(1)<<38|uint64(1)<<39); !strings.HasSuffix(capLine, want) {
			t.Fatalf("boxtap runs with %s, want exactly %s", capLine, want)
		}
		e.hxGet(t, base+"/status/202", 3, 202)
		if _, err := p.WaitLines(3, traceStartTimeout); err != nil {
			t.Fatal(err)
		}
		vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGINT))
		requireCount(t, vs, 3)
		for i, v := range vs {
			if v.resp.StatusCode != 202 || v.ev.Container.ID != c.ID {
				t.Errorf("event %d: status %d container %q", i, v.resp.StatusCode, v.ev.Container.ID)
			}
		}
	})

	names := map[string]string{"bpf": "CAP_BPF", "perfmon": "CAP_PERFMON", "net_admin": "CAP_NET_ADMIN"}
	for _, missing := range all {
		t.Run("without-"+missing, func(t *testing.T) {
			var caps []string
			for _, c := range all {
				if c != missing {
					caps = append(caps, c)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), traceExitTimeout)
			defer cancel()
			out, err := e.hxCapBoxtap(ctx, setpriv, caps, "trace", c.Name).CombinedOutput()
			if err == nil {
				t.Fatalf("boxtap trace without %s succeeded:\n%s", names[missing], out)
			}
			msg := strings.TrimSpace(string(out))
			if !strings.Contains(msg, names[missing]) {
				t.Errorf("error without %s does not name it:\n%s", names[missing], msg)
			}
			for other, name := range names {
				if other != missing && strings.Contains(msg, name+" (") {
					t.Errorf("error without %s also calls %s missing:\n%s", names[missing], name, msg)
				}
			}
			if strings.Count(msg, "\n") > 0 {
				t.Errorf("the error should be one line:\n%s", msg)
			}
		})
	}
}
