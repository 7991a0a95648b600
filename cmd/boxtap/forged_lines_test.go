package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// hostileName is a container name a containerd user can set through the
// nerdctl/name label: a newline that starts a line of its own, and ANSI
// escapes that clear the line and change colours.
const hostileName = "evil\nFORGED boxtap: 0 events, 0 lost records\x1b[2K\x1b[31m"

// TestHostileContainerNameCannotForgeStderrLines traces a containerd
// container whose name holds a newline and ANSI escapes, makes the kernel
// drop records (boxtap is stopped while a burst overflows a 16 KiB ring) and
// stops the container. The lost-records warning, the stop line and every
// other line show the name quoted: no stderr line starts with the forged
// text and no escape byte reaches the terminal.
func TestHostileContainerNameCannotForgeStderrLines(t *testing.T) {
	e := newWatchEnv(t, "")
	testapp := itest.BuildTestApp(t)
	ns := e.namespace(t)

	const m = 100
	serverJSON, clientJSON := overflowScripts(m, m)
	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: map[string]string{"nerdctl/name": hostileName},
		Args: []string{"script-serve", "-addr", addr, "-script", serverJSON}})

	quoted := strconv.Quote(hostileName)
	short := itest.ShortID(tk.ID)
	p := e.startBoxtap(t, "trace", "--runtime", "containerd", "--namespace", ns, "--ring-size", "16KiB", tk.ID)
	if err := p.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", quoted, short), traceStartTimeout); err != nil {
		t.Fatal(err)
	}

	// Overflow the ring while boxtap cannot read it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := burstWhileStopped(ctx, t, p, testapp, addr, clientJSON)
	warning := fmt.Sprintf("boxtap: warning: %s (%s): the kernel dropped ", quoted, short)
	if err := p.WaitStderr(warning, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	if err := cl.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := cl.Wait(30 * time.Second); err != nil {
		t.Fatalf("script-client: %v\n%s", err, cl.Stderr())
	}

	// The container's end prints the stop line, and boxtap exits.
	tk.Kill(t, syscall.SIGKILL)
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
	}
	stopLine := fmt.Sprintf("container %s (%s) stopped: ", quoted, short)
	if !strings.Contains(x.stderr, stopLine) || !strings.Contains(x.stderr, " lost records\n") {
		t.Errorf("stderr has no stop line %q with lost records:\n%s", stopLine, x.stderr)
	}
	if strings.Contains(x.stderr, "\x1b") {
		t.Errorf("an escape byte reached stderr:\n%q", x.stderr)
	}
	for _, line := range strings.Split(x.stderr, "\n") {
		if strings.Contains(line, "FORGED") && !strings.Contains(line, quoted) {
			t.Errorf("stderr line %q shows part of the name unquoted; stderr:\n%s", line, x.stderr)
		}
	}
}

// TestHostileAnnotationCannotForgeHookLogLines runs the hook (as a runtime
// would, as root) for a container whose io.boxtap.trace annotation asks for
// an output directory named with a newline and ANSI escapes. The hook fails
// open, and neither its stderr nor its log has a line that starts with the
// forged text or an escape byte.
func TestHostileAnnotationCannotForgeHookLogLines(t *testing.T) {
	itest.RequireRoot(t)
	bin := itest.BuildBoxtap(t)
	out := t.TempDir()
	const forged = "web\nFORGED boxtap hook: info: tracing\x1b[2K\x1b[31m"
	// No such process and no bundle: nothing can be attached whatever the
	// hook makes of the directory.
	state, _ := json.Marshal(map[string]any{
		"ociVersion": "1.0.2", "id": "bxh-forged", "status": "creating", "pid": 2147483647, "bundle": "/nonexistent",
		"annotations": map[string]string{"io.boxtap.trace": "output-dir=" + forged},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "hook", "createRuntime", "--output-dir="+out, "--run-dir="+filepath.Join(out, "run"), "--timeout=10s")
	cmd.Stdin = bytes.NewReader(state)
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the hook failed although it fails open: %v\n%s", err, output)
	}
	logged, _ := os.ReadFile(filepath.Join(out, hookLogName))
	all := string(output) + string(logged)
	if strings.TrimSpace(string(output)) == "" && strings.TrimSpace(string(logged)) == "" {
		t.Fatal("the hook said nothing about the output directory it could not use")
	}
	if strings.Contains(all, "\x1b") {
		t.Errorf("an escape byte reached the hook's output or log:\n%q", all)
	}
	for _, line := range strings.Split(all, "\n") {
		if strings.HasPrefix(line, "FORGED") {
			t.Errorf("forged line %q; output:\n%s\nlog:\n%s", line, output, logged)
		}
	}
}
