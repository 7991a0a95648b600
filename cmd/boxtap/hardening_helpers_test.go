package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// Helpers shared by the hardening and soak tests (lossy networks, crashes, secrets,
// privileges, long runs). They build on trace_helpers_test.go.

// hxName returns a unique container or network name with the hardening tests' prefix.
func hxName(kind string) string {
	var b [4]byte
	rand.Read(b[:])
	return "bxh-" + kind + "-" + hex.EncodeToString(b[:])
}

// hxRun runs a container named with the hardening prefix.
func (e *traceEnv) hxRun(t *testing.T, kind, network, readyLog string, flags []string, args ...string) *itest.Container {
	t.Helper()
	if network == "" {
		network = "host"
	}
	c := e.docker.Run(t, itest.RunOpts{Name: hxName(kind), Image: e.image, Network: network, Flags: flags, Args: args})
	if readyLog != "" {
		if err := c.WaitLog(readyLog, containerTimeout); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// hxBridgeNetwork creates a Docker bridge network for this test and removes it at the end
// (after the containers in it, which are registered later and so removed first). A
// network of its own keeps the test independent of the state of the default docker0 bridge.
func hxBridgeNetwork(t *testing.T, d *itest.Docker) string {
	t.Helper()
	name := hxName("net")
	d.Command(t, "network", "create", "--driver", "bridge", "--label", "boxtap-itest=1", name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "docker", "network", "rm", name).CombinedOutput(); err != nil {
			t.Logf("remove network %s: %v: %s", name, err, out)
		}
	})
	return name
}

// hxRequireTool requires a program on PATH and returns its path.
func hxRequireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	itest.Require(t, err == nil, "needs %s on PATH (apt-get install %s, or run scripts/ensure-deps.sh)", name, pkg)
	return p
}

// hxCommand runs a command with a bound and returns its combined output; the test fails
// when it fails. stdin may be empty.
func hxCommand(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hxSummary is boxtap's final counts line, parsed.
type hxSummary struct {
	events, lostRecords, truncated, resyncs, retransmits, skipped uint64
}

var hxSummaryRE = regexp.MustCompile(`boxtap: (\d+) events, (\d+) lost records, (\d+) truncated header blocks, (\d+) resyncs, (\d+) retransmits dropped, (\d+) body bytes skipped in the kernel`)

// hxParseSummary finds the last counts line in boxtap's stderr; the test fails without one.
func hxParseSummary(t *testing.T, stderr string) hxSummary {
	t.Helper()
	all := hxSummaryRE.FindAllStringSubmatch(stderr, -1)
	if len(all) == 0 {
		t.Fatalf("no counts line in boxtap's stderr:\n%s", stderr)
	}
	m := all[len(all)-1]
	n := func(i int) uint64 {
		v, err := strconv.ParseUint(m[i], 10, 64)
		if err != nil {
			t.Fatalf("counts line %q: %v", m[0], err)
		}
		return v
	}
	return hxSummary{events: n(1), lostRecords: n(2), truncated: n(3), resyncs: n(4), retransmits: n(5), skipped: n(6)}
}

// hxLastStderrLine returns the last non-empty line of stderr.
func hxLastStderrLine(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	return lines[len(lines)-1]
}

// hxCgroupID returns the cgroup id (inode number) of a cgroup directory.
func hxCgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat cgroup %s: %v", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("stat cgroup %s: no inode number", dir)
	}
	return st.Ino
}

// boxtapProgNames are the names of boxtap's programs as the kernel shows them.
var boxtapProgNames = map[string]bool{
	"capture_egress": true, "capture_ingress": true,
}

// hxLink is one bpf link as `bpftool --json link show` lists it.
type hxLink struct {
	ID       int    `json:"id"`
	Type     string `json:"type"`
	ProgID   int    `json:"prog_id"`
	CgroupID uint64 `json:"cgroup_id"`
	TpName   string `json:"tp_name"`
}

// hxLinks lists every bpf link with its program's name.
func hxLinks(t *testing.T) ([]hxLink, map[int]string) {
	t.Helper()
	var links []hxLink
	out := bpftool(t, "--json", "link", "show")
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("decode bpftool link output: %v\n%s", err, out)
	}
	var progs []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	out = bpftool(t, "--json", "prog", "show")
	if err := json.Unmarshal([]byte(out), &progs); err != nil {
		t.Fatalf("decode bpftool prog output: %v\n%s", err, out)
	}
	names := make(map[int]string, len(progs))
	for _, p := range progs {
		names[p.ID] = p.Name
	}
	return links, names
}

// hxCgroupLinks lists the links of boxtap's programs on one cgroup (by id), whoever holds them.
func hxCgroupLinks(t *testing.T, cgroupID uint64) []string {
	t.Helper()
	links, names := hxLinks(t)
	var found []string
	for _, l := range links {
		if l.CgroupID == cgroupID && boxtapProgNames[names[l.ProgID]] {
			found = append(found, fmt.Sprintf("link %d (%s, program %s)", l.ID, l.Type, names[l.ProgID]))
		}
	}
	return found
}

// hxHeldByPID returns the ids of the bpf links a process holds.
func hxHeldByPID(pid int) map[int]bool {
	return fdinfoIDs(fmt.Sprintf("/proc/%d/fdinfo/*", pid), "link_id:")
}

// hxWaitUntil polls cond every 100 ms until it holds or the bound passes, and reports
// whether it held. The bound limits the wait only; nothing asserts how long it took.
func hxWaitUntil(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
