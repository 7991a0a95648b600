package bpf

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// A tracer's reader reads an attachment's counters while another goroutine
// detaches it (a container stopping): Counters must return the counters
// read at detach time, without a data race (run with -race).
func TestCountersWhileClosing(t *testing.T) {
	mount := itest.RequireBPF(t)
	coll, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	dir, err := os.MkdirTemp(mount, "boxtap-bpf-test-")
	if err != nil {
		t.Fatalf("creating a test cgroup: %v", err)
	}
	defer os.Remove(dir)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		att, err := coll.Attach(dir, st.Ino)
		if err != nil {
			t.Fatalf("attaching to %s: %v", filepath.Base(dir), err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for j := 0; j < 50; j++ {
				if _, err := att.Counters(); err != nil {
					t.Errorf("counters: %v", err)
					return
				}
			}
		})
		if err := att.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		wg.Wait()
		if _, err := att.Counters(); err != nil {
			t.Errorf("counters after close: %v", err)
		}
	}
}
