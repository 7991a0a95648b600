package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// requireAttached checks that boxtap's two cgroup_skb programs are on the cgroup, so that
// a later checkDetached proves something.
func requireAttached(t *testing.T, cgroupDir string) {
	t.Helper()
	out := bpftool(t, "cgroup", "show", cgroupDir)
	if !strings.Contains(out, "cgroup_inet_egress") || !strings.Contains(out, "cgroup_inet_ingress") {
		t.Fatalf("while tracing, %s has not both cgroup_skb programs:\n%s", cgroupDir, out)
	}
}

func TestTraceSignalFlushesDetachesAndExitsZero(t *testing.T) {
	e := newTraceEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			port := itest.FreePort(t)
			c := e.startServer(t, "127.0.0.1:"+strconv.Itoa(port))
			cgroupDir := e.cgroupDirOf(t, c.PID())
			p := e.startTrace(t, []*itest.Container{c})
			requireAttached(t, cgroupDir)
			calls := doCalls(t, "http://127.0.0.1:"+strconv.Itoa(port), true, serverCalls()[:5])
			// Signal right after the last response: its event must still be written.
			vs := viewEvents(t, stopTraceOK(t, p, sig))
			requireCount(t, vs, len(calls))
			for i, v := range vs {
				checkCallEvent(t, i, v, calls[i], "127.0.0.1:"+strconv.Itoa(port))
			}
			checkDetached(t, cgroupDir)
			checkNoOrphanLinks(t)
		})
	}
}

func TestTraceCountExitsAfterExactlyNEvents(t *testing.T) {
	e := newTraceEnv(t)
	const count = 3
	port := itest.FreePort(t)
	c := e.startServer(t, "127.0.0.1:"+strconv.Itoa(port))
	cgroupDir := e.cgroupDirOf(t, c.PID())
	p := e.startTrace(t, []*itest.Container{c}, "--count", strconv.Itoa(count))
	// A burst of more responses than --count, faster than boxtap can stop.
	doCalls(t, "http://127.0.0.1:"+strconv.Itoa(port), true, append(serverCalls(), serverCalls()...))
	vs := viewEvents(t, stopTraceOK(t, p, nil))
	requireCount(t, vs, count)
	checkDetached(t, cgroupDir)
	checkNoOrphanLinks(t)
}

func TestTraceDurationExitsByItself(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	c := e.startServer(t, "127.0.0.1:"+strconv.Itoa(port))
	cgroupDir := e.cgroupDirOf(t, c.PID())
	p := e.startTrace(t, []*itest.Container{c}, "--duration", "2s")
	calls := doCalls(t, "http://127.0.0.1:"+strconv.Itoa(port), false, serverCalls()[:2])
	vs := viewEvents(t, stopTraceOK(t, p, nil))
	requireCount(t, vs, len(calls))
	checkDetached(t, cgroupDir)
	checkNoOrphanLinks(t)
}

func TestTraceExitsWhenTracedContainerStops(t *testing.T) {
	e := newTraceEnv(t)
	port1, port2 := itest.FreePort(t), itest.FreePort(t)
	first := e.startServer(t, "127.0.0.1:"+strconv.Itoa(port1))
	second := e.startServer(t, "127.0.0.1:"+strconv.Itoa(port2))
	p := e.startTrace(t, []*itest.Container{first, second})
	doCalls(t, "http://127.0.0.1:"+strconv.Itoa(port1), true, serverCalls()[:2])
	doCalls(t, "http://127.0.0.1:"+strconv.Itoa(port2), true, serverCalls()[:3])

	first.Stop()
	stopped := fmt.Sprintf("container %s (%s) stopped: 2 events\n", first.Name, itest.ShortID(first.ID))
	if err := p.WaitStderr(stopped, traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		t.Fatalf("boxtap exited while %s was still traced; stderr:\n%s", second.Name, p.Stderr())
	default:
	}
	doCalls(t, "http://127.0.0.1:"+strconv.Itoa(port2), false, serverCalls()[:1])
	second.Stop()
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with %d after the last container stopped; stderr:\n%s", x.code, x.stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("container %s (%s) stopped: 4 events\n", second.Name, itest.ShortID(second.ID)),
		"no traced container left\n",
	} {
		if !strings.Contains(x.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, x.stderr)
		}
	}
	checkCountsLine(t, x.stderr, len(x.events))
	vs := viewEvents(t, x.events)
	requireCount(t, vs, 6)
	perContainer := map[string]int{}
	for _, v := range vs {
		perContainer[v.ev.Container.Name]++
	}
	if perContainer[first.Name] != 2 || perContainer[second.Name] != 4 {
		t.Errorf("events per container %v, want %s: 2, %s: 4", perContainer, first.Name, second.Name)
	}
	checkNoOrphanLinks(t)
	if _, err := os.Stat("/proc/" + strconv.Itoa(p.PID())); err == nil {
		t.Errorf("boxtap process %d still exists", p.PID())
	}
}
