package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHookBadSetupsLogOneLineAndFailOpen: an unreadable OCI state and a hook
// run without root each leave one clear line in the hook's log and exit 0,
// so that the container still starts; with --fail-closed they fail.
func TestHookBadSetupsLogOneLineAndFailOpen(t *testing.T) {
	e := newHookEnv(t)
	// The unprivileged run needs a binary and an output directory it can use.
	binDir, err := os.MkdirTemp("", "bxh-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "boxtap")
	data, err := os.ReadFile(e.boxtap)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	validState := `{"ociVersion":"1.0.2","id":"bxh-badsetup","status":"creating","pid":1,"bundle":"/nonexistent"}`
	cases := []struct {
		name   string
		stdin  string
		asUser bool
		want   string
	}{
		{"unreadable state", "this is not an OCI state", false, "state"},
		{"not root", validState, true, "not root"},
	}
	for _, tc := range cases {
		for _, failClosed := range []bool{false, true} {
			// Not t.TempDir(): its parents are closed to other users.
			parent, err := os.MkdirTemp("", "bxh-bad")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(parent) })
			os.Chmod(parent, 0o755)
			out := filepath.Join(parent, "out")
			if err := os.Mkdir(out, 0o700); err != nil {
				t.Fatal(err)
			}
			argv := []string{bin, "hook", "createRuntime", "--output-dir=" + out, "--run-dir=" + filepath.Join(out, "run"), "--timeout=10s"}
			if failClosed {
				argv = append(argv, "--fail-closed")
			}
			if tc.asUser {
				if err := os.Chown(out, 65534, 65534); err != nil {
					t.Fatal(err)
				}
				argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, argv...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			output, err := cmd.CombinedOutput()
			cancel()
			var ee *exec.ExitError
			switch {
			case !failClosed && err != nil:
				t.Errorf("%s: the hook failed although it fails open: %v\n%s", tc.name, err, output)
			case failClosed && !errors.As(err, &ee):
				t.Errorf("%s: with --fail-closed the hook exited 0 (or did not run: %v)\n%s", tc.name, err, output)
			}
			logged, _ := os.ReadFile(filepath.Join(out, hookLogName))
			if _, statErr := os.Stat("/dev/log"); statErr == nil {
				logged = output // syslog takes the line; the hook's own output still names the cause
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(string(logged)), "\n") {
				if strings.Contains(l, tc.want) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Errorf("%s (fail-closed %v): %d log lines name the cause %q, want 1:\n%s\noutput:\n%s", tc.name, failClosed, len(lines), tc.want, logged, output)
			}
			if strings.Contains(string(output)+string(logged), "panic:") {
				t.Errorf("%s: the hook panicked:\n%s", tc.name, output)
			}
		}
	}
}
