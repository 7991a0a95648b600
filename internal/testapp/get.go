package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// getCmd makes -n GET requests and prints "STATUS BYTES" per response. It succeeds when every
// request got a complete response, whatever its status code.
func getCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("get", stderr)
	url := fs.String("url", "", "URL to fetch, e.g. http://127.0.0.1:8080/status/200 or http://[::1]:8080/")
	n := fs.Int("n", 1, "number of requests")
	keepalive := fs.Bool("keepalive", true, "reuse one connection (false: a new connection per request)")
	interval := fs.Duration("interval", 0, "pause between requests")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout per request")
	waitSignal := fs.Bool("wait-signal", false, `print "waiting for SIGUSR1" on stderr and wait for that signal before the first request`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("get: -url is required")
	}
	if *n < 1 {
		return fmt.Errorf("get: -n must be at least 1, got %d", *n)
	}
	if *waitSignal {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGUSR1)
		defer signal.Stop(sigs)
		if err := waitForSignal(ctx, sigs, stderr); err != nil {
			return fmt.Errorf("get: %w", err)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DisableKeepAlives = !*keepalive
	transport.Proxy = nil // tests talk to loopback and their own containers only
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: *timeout}

	for i := 0; i < *n; i++ {
		if i > 0 && *interval > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("get: interrupted after %d of %d requests", i, *n)
			case <-time.After(*interval):
			}
		}
		status, size, err := fetch(ctx, client, *url)
		if err != nil {
			return fmt.Errorf("get: request %d of %d: %w", i+1, *n, err)
		}
		fmt.Fprintf(stdout, "%d %d\n", status, size)
	}
	return nil
}

func fetch(ctx context.Context, client *http.Client, url string) (status int, size int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("build request for %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	size, err = io.Copy(io.Discard, resp.Body)
	if err != nil {
		return resp.StatusCode, size, fmt.Errorf("read body after %d bytes: %w", size, err)
	}
	return resp.StatusCode, size, nil
}
