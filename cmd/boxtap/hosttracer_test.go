package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeHost answers one connection on dir/host.sock with hello, then, if
// the hook sends a request, with reply.
func fakeHost(t *testing.T, dir string, hello hostHello, reply *hostReply) <-chan hostRequest {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(dir, hostSocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan hostRequest, 1)
	go func() {
		defer close(got)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		line, _ := json.Marshal(hello)
		if _, err := conn.Write(append(line, '\n')); err != nil {
			return
		}
		var req hostRequest
		if err := readJSONLine(bufio.NewReader(conn), &req); err != nil {
			return
		}
		got <- req
		if reply != nil {
			line, _ := json.Marshal(reply)
			_, _ = conn.Write(append(line, '\n'))
		}
	}()
	return got
}

func TestAskHostHandshake(t *testing.T) {
	ours := buildID()
	for _, tc := range []struct {
		name     string
		hello    hostHello
		reply    *hostReply
		anyBuild bool
		noHost   bool
		wantErr  string // "" for success; errNoHost and errHostBuild checked by kind
		wantSent bool
	}{
		{name: "same build, attached", hello: hostHello{Proto: hostProto, Build: ours}, reply: &hostReply{OK: true}, wantSent: true},
		{name: "same build, refused", hello: hostHello{Proto: hostProto, Build: ours}, reply: &hostReply{Error: "no such cgroup"}, wantSent: true},
		{name: "another build", hello: hostHello{Proto: hostProto, Build: "other"}, wantErr: "another boxtap build"},
		{name: "another build, remove", hello: hostHello{Proto: hostProto, Build: "other"}, reply: &hostReply{OK: true}, anyBuild: true, wantSent: true},
		{name: "another protocol", hello: hostHello{Proto: hostProto + 1, Build: ours}, anyBuild: true, wantErr: "protocol"},
		{name: "exiting", hello: hostHello{Proto: hostProto, Build: ours}, reply: &hostReply{Closing: true}, wantErr: "no host tracer", wantSent: true},
		{name: "none", noHost: true, wantErr: "no host tracer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var got <-chan hostRequest
			if !tc.noHost {
				got = fakeHost(t, dir, tc.hello, tc.reply)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := hostRequest{Op: "add", Key: "c1", Tracer: &hookTracerCmd{ID: "c1"}}
			rep, err := askHost(ctx, dir, req, tc.anyBuild)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("askHost: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("askHost = %+v, %v; want an error with %q", rep, err, tc.wantErr)
			}
			if tc.wantErr == "no host tracer" && !errors.Is(err, errNoHost) {
				t.Fatalf("%v is not errNoHost", err)
			}
			var other errHostBuild
			if tc.wantErr == "another boxtap build" && !errors.As(err, &other) {
				t.Fatalf("%v is not errHostBuild", err)
			}
			if tc.reply != nil && err == nil && (rep.OK != tc.reply.OK || rep.Error != tc.reply.Error) {
				t.Fatalf("reply %+v, want %+v", rep, *tc.reply)
			}
			if got != nil {
				r, sent := <-got
				if sent != tc.wantSent {
					t.Fatalf("request sent: %v, want %v", sent, tc.wantSent)
				}
				if sent && (r.Op != "add" || r.Key != "c1" || r.Tracer == nil || r.Tracer.ID != "c1") {
					t.Fatalf("request %+v", r)
				}
			}
		})
	}
}

// TestHostLockHeldSeesOnlyAHeldLock: a hook waits for the socket instead of
// exec'ing a host tracer only while another process holds the lock; a run
// directory without one, or with a lock file nobody holds, starts one.
func TestHostLockHeldSeesOnlyAHeldLock(t *testing.T) {
	dir := t.TempDir()
	if hostLockHeld(dir) {
		t.Fatal("held in a run directory without a lock file")
	}
	f, err := os.OpenFile(filepath.Join(dir, hostLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if hostLockHeld(dir) {
		t.Fatal("held while nobody locks the file")
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if !hostLockHeld(dir) {
		t.Fatal("not held while a host tracer's lock is taken")
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if hostLockHeld(dir) {
		t.Fatal("still held after the lock was released")
	}
}
