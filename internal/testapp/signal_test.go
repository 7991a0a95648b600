package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitForNote polls buf until it contains "waiting for SIGUSR1" or the command ended.
func waitForNote(t *testing.T, buf *syncBuffer, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "waiting for SIGUSR1") {
		select {
		case err := <-done:
			t.Fatalf("command ended before waiting for SIGUSR1: %v; stderr: %s", err, buf.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"waiting for SIGUSR1\" within 10s; stderr: %s", buf.String())
		}
	}
}

func TestScriptClientWaitSignalPausesUntilSIGUSR1(t *testing.T) {
	response := "HTTP/1.1 204 No Content\r\n\r\n"
	request := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	addr, stop := startCommand(t, "script-serve", "-addr", "127.0.0.1:0", "-timeout", "10s",
		"-script", fmt.Sprintf(`[{"recv_request":1},{"send":%q},{"recv_request":1},{"send":%q}]`, response, response))
	client := fmt.Sprintf(`[{"send":%q},{"recv_bytes":%d},{"wait_signal":true},{"send":%q},{"recv_bytes":%d}]`,
		request, len(response), request, len(response))
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"script-client", "-addr", addr, "-script", client, "-timeout", "10s"}, &out, &errOut)
	}()
	waitForNote(t, &errOut, done)
	select {
	case err := <-done:
		t.Fatalf("client finished without the signal: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("client: %v; stderr: %s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client did not finish within 10s after SIGUSR1")
	}
	if want := fmt.Sprintf("received %d\n", 2*len(response)); out.String() != want {
		t.Fatalf("client output %q, want %q", out.String(), want)
	}
	if err, output := stop(); err != nil {
		t.Fatalf("server: %v; output: %s", err, output)
	}
}

func TestScriptServeRejectsWaitSignal(t *testing.T) {
	addr, stop := startCommand(t, "script-serve", "-addr", "127.0.0.1:0", "-timeout", "10s", "-script", `[{"wait_signal":true}]`)
	if _, err := runClient(t, addr, `[{"recv_until_close":true}]`, false); err != nil {
		t.Fatalf("client: %v", err)
	}
	err, output := stop()
	if err == nil || !strings.Contains(err.Error(), "only script-client listens for SIGUSR1") {
		t.Fatalf("script-serve error = %v (output %s), want it to say only script-client supports wait_signal", err, output)
	}
}

func TestGetWaitSignalPausesUntilSIGUSR1(t *testing.T) {
	addr, stop := startCommand(t, "serve", "-addr", "127.0.0.1:0")
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"get", "-url", "http://" + addr + "/status/201", "-n", "2", "-wait-signal"}, &out, &errOut)
	}()
	waitForNote(t, &errOut, done)
	if out.String() != "" {
		t.Fatalf("get made requests before the signal: %q", out.String())
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("get: %v; stderr: %s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("get did not finish within 10s after SIGUSR1")
	}
	if want := "201 11\n201 11\n"; out.String() != want {
		t.Fatalf("get output %q, want %q", out.String(), want)
	}
	stop()
}
