package bpf

import (
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// The verifier accepts the programs with the status filter on, and the
// bitmap the kernel reads holds exactly the codes KeepStatus keeps.
func TestLoadWithStatusFilterSetsTheKernelsBitmap(t *testing.T) {
	itest.RequireBPF(t)
	keep := func(code int) bool { return code/100 == 5 || code == 404 }
	coll, err := Load(Options{KeepStatus: keep})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	var on uint8
	if err := coll.objs.FilterStatus.Get(&on); err != nil || on != 1 {
		t.Fatalf("filter_status = %d (%v), want 1", on, err)
	}
	var bits [16]uint64
	if err := coll.objs.KeepStatus.Get(&bits); err != nil {
		t.Fatal(err)
	}
	for code := 0; code < 1024; code++ {
		got := bits[code/64]>>(code%64)&1 == 1
		if want := code >= 100 && code < 600 && keep(code); got != want {
			t.Errorf("status %d: kept %v in the kernel's bitmap, want %v", code, got, want)
		}
	}
}
