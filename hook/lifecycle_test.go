package hook

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCgroupDirFallsBackToConfig(t *testing.T) {
	mount := t.TempDir()
	for _, d := range []string{"docker/abc", "system.slice/docker-abc.scope"} {
		if err := os.MkdirAll(filepath.Join(mount, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, cgroupsPath, want, wantErr string
	}{
		{"plain", "/docker/abc", "docker/abc", ""},
		{"systemd", "system.slice:docker:abc", "system.slice/docker-abc.scope", ""},
		{"missing dir", "/docker/nope", "", "no such"},
		{"root", "/", "", "root cgroup"},
		{"none", "", "", "no linux.cgroupsPath"},
		{"escape", "/docker/../../etc", "", "cgroupsPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := t.TempDir()
			cfg := `{"linux":{"cgroupsPath":` + strconv.Quote(tt.cgroupsPath) + `}}`
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := CgroupDir(mount, 0, bundle)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CgroupDir error = %v, want %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "no init PID") {
					t.Errorf("error %q does not say why the PID did not help", err)
				}
				return
			}
			if err != nil || got != filepath.Join(mount, tt.want) {
				t.Fatalf("CgroupDir = %q, %v; want %q", got, err, filepath.Join(mount, tt.want))
			}
		})
	}
	if _, err := CgroupDir(mount, 0, filepath.Join(mount, "no-bundle")); err == nil || !strings.Contains(err.Error(), "OCI config") {
		t.Errorf("CgroupDir without config.json: %v", err)
	}
}

func TestWaitReady(t *testing.T) {
	tests := []struct {
		name    string
		write   func(w *os.File)
		timeout time.Duration
		wantErr string
	}{
		{"attached", func(w *os.File) { SignalReady(w, nil) }, time.Minute, ""},
		{"error", func(w *os.File) { SignalReady(w, errors.New("the kernel said no\nreally")) }, time.Minute, "the kernel said no really"},
		{"died", func(w *os.File) { w.Close() }, time.Minute, "exited before attaching"},
		{"garbage", func(w *os.File) { w.WriteString("hello\n"); w.Close() }, time.Minute, "unexpected readiness line"},
		{"timeout", func(w *os.File) { t.Cleanup(func() { w.Close() }) }, 20 * time.Millisecond, "did not attach in time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			go tt.write(w)
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			err = WaitReady(ctx, r)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("WaitReady = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunDir(t *testing.T) {
	d := RunDir(filepath.Join(t.TempDir(), "run"))
	// A pid file naming a process that is not a tracer is stale.
	if err := d.WritePID("c1", os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if pid, err := d.ReadPID("c1"); err != nil || pid != os.Getpid() {
		t.Fatalf("ReadPID = %d, %v", pid, err)
	}
	if _, ok := d.LiveTracer("c1"); ok {
		t.Fatal("the test process was taken for a tracer")
	}
	if _, err := os.Stat(d.PIDFile("c1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale pid file kept: %v", err)
	}
	// A live process whose command line is a tracer's for c2 is found.
	cmd := exec.Command("sh", "-c", "sleep 30; :", TracerSubcommand, "--id=c2")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sh: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := d.WritePID("c2", cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pid, ok := d.LiveTracer("c2"); !ok || pid != cmd.Process.Pid {
		t.Fatalf("LiveTracer(c2) = %d, %v", pid, ok)
	}
	if err := d.WritePID("c2", os.Getpid()); err == nil || !strings.Contains(err.Error(), "already traced") {
		t.Fatalf("second WritePID for a live tracer = %v", err)
	}
	d.RemovePID("c2", 12345) // not the recorded pid: kept
	if _, err := d.ReadPID("c2"); err != nil {
		t.Fatal("RemovePID removed another process's pid file")
	}
}

func TestIsTracerCmdline(t *testing.T) {
	line := []byte("/proc/self/exe\x00hook-tracer\x00--id=abc\x00--cgroup-dir=/x\x00")
	if !IsTracerCmdline(line, "abc") || IsTracerCmdline(line, "ab") || IsTracerCmdline([]byte("boxtap\x00--id=abc\x00"), "abc") {
		t.Fatal("IsTracerCmdline matches the wrong processes")
	}
}

func TestWaitExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := WaitExit(ctx, cmd.Process.Pid); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitExit on a live process = %v, want deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- WaitExit(context.Background(), cmd.Process.Pid) }()
	cmd.Process.Kill()
	// pidfd polls readable once the process exits, even before it is reaped.
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}
