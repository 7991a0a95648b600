package docker

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepository(t *testing.T) {
	tests := []struct{ ref, want string }{
		{"nginx", "nginx"},
		{"nginx:1.27", "nginx"},
		{"library/nginx:latest", "library/nginx"},
		{"reg:5000/a/b", "reg:5000/a/b"},
		{"reg:5000/a/b:v1", "reg:5000/a/b"},
		{"reg:5000/a/b@sha256:abcd", "reg:5000/a/b"},
		{"a/b:v1@sha256:abcd", "a/b"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := repository(tt.ref); got != tt.want {
			t.Errorf("repository(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}

func TestNotRunningError(t *testing.T) {
	err := &notRunningError{name: "web", id: "0123456789ab", state: "exited"}
	msg := err.Error()
	for _, want := range []string{"web", "0123456789ab", "not running", "exited", "docker start web"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

// TestNewUnreachable needs no daemon: the socket does not exist.
func TestNewUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	tests := []struct {
		host, wantHost, wantCause string
	}{
		{"unix:///nonexistent.sock", "unix:///nonexistent.sock", "no such file or directory"},
		{"unix://" + t.TempDir() + "/docker.sock", "unix://", "no such file or directory"},
	}
	for _, tt := range tests {
		c, err := New(context.Background(), tt.host)
		if err == nil {
			c.Close()
			t.Fatalf("New(%q) succeeded, want an error", tt.host)
		}
		msg := err.Error()
		t.Logf("New(%q): %s", tt.host, msg)
		if strings.Contains(msg, "\n") {
			t.Errorf("error is not one line: %q", msg)
		}
		for _, want := range []string{"cannot reach Docker at " + tt.wantHost, tt.wantCause, "start dockerd or pass --docker-host"} {
			if !strings.Contains(msg, want) {
				t.Errorf("New(%q) error %q does not contain %q", tt.host, msg, want)
			}
		}
	}
}

func TestNewConnectionRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "dead.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the socket file stays, nobody listens
	c, err := New(context.Background(), "unix://"+sock)
	if err == nil {
		c.Close()
		t.Fatal("New on a dead socket succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "unix://"+sock) {
		t.Errorf("error %q should name the socket and the refusal", err)
	}
}

func TestNewUsesDockerHostEnv(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent-from-env.sock")
	c, err := New(context.Background(), "")
	if err == nil {
		c.Close()
		t.Fatal("New succeeded against a missing socket")
	}
	if !strings.Contains(err.Error(), "unix:///nonexistent-from-env.sock") {
		t.Errorf("error %q does not name the DOCKER_HOST socket", err)
	}
	// An explicit host wins over DOCKER_HOST.
	c, err = New(context.Background(), "unix:///nonexistent-explicit.sock")
	if err == nil {
		c.Close()
		t.Fatal("New succeeded against a missing socket")
	}
	if !strings.Contains(err.Error(), "unix:///nonexistent-explicit.sock") {
		t.Errorf("error %q does not name the explicit host", err)
	}
}

func TestNewInvalidHost(t *testing.T) {
	c, err := New(context.Background(), "not a url")
	if err == nil {
		c.Close()
		t.Fatal("New with an invalid host succeeded")
	}
	if !strings.Contains(err.Error(), "--docker-host") {
		t.Errorf("error %q does not say how to fix it", err)
	}
}
