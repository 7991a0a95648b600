//go:build amd64

package tlssource

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/cgroup"
)

// TestIntegrationInstrumentationGap starts, one after the other, 20
// processes that load libssl in a traced cgroup (python3 importing ssl,
// then waiting): each is instrumented, exactly once, from the notice of
// its dynamic loader's uprobe (set at its exec, reporting the dlopen), and
// the gap from that notice to its uprobes is logged
// (median and worst, for BENCHMARKS.md; nothing is asserted about time).
// "spaced" starts each process once the previous one's uprobes are
// detached; "back-to-back" starts it at once, while they are detached.
func TestIntegrationInstrumentationGap(t *testing.T) {
	for _, spaced := range []bool{true, false} {
		name := "back-to-back"
		if spaced {
			name = "spaced"
		}
		t.Run(name, func(t *testing.T) { measureGap(t, spaced) })
	}
}

func measureGap(t *testing.T, spaced bool) {
	mount := itest.RequireBPF(t)
	_, err := os.Stat("/usr/bin/python3")
	itest.Require(t, err == nil, "needs Debian's python3: %v", err)
	dir := filepath.Join(mount, fmt.Sprintf("boxtap-tls-gap-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cg.Close()
		_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 250 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	gaps := make(chan Gap, 64)
	src.OnInstrumented(func(g Gap) { gaps <- g })
	go src.Watch(func(err error) { t.Errorf("watch: %v", err) })
	if err := src.Add(dir, id); err != nil {
		t.Fatal(err)
	}
	const runs = 20
	var got []time.Duration
	for i := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", "import ssl, sys; sys.stdin.read()")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case g := <-gaps:
			if g.PID != cmd.Process.Pid {
				t.Fatalf("run %d: pid %d instrumented, want %d", i, g.PID, cmd.Process.Pid)
			}
			got = append(got, g.Gap)
		case <-ctx.Done():
			t.Fatalf("run %d: process %d was not instrumented within a minute", i, cmd.Process.Pid)
		}
		if n := src.Instrumented(); n != 1 {
			t.Fatalf("run %d: %d (process, library) pairs instrumented, want 1", i, n)
		}
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run %d: python3: %v", i, err)
		}
		cancel()
		if spaced {
			src.prune()
			src.closing.Wait()
		} // else the next notice prunes the exited process
	}
	select {
	case g := <-gaps:
		t.Fatalf("an extra instrumentation: %+v", g)
	default:
	}
	slices.Sort(got)
	t.Logf("%s: instrumentation gap over %d processes: median %s, worst %s (all: %v)", t.Name(), runs, got[runs/2], got[runs-1], got)
}
