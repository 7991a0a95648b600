package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/cgroup"
	"github.com/boxtap/boxtap/runtime/container"
)

type demoCmd struct {
	JSON bool `help:"Print compact JSON Lines instead of the text view and one indented event."`
}

func (demoCmd) Help() string {
	return `The demo needs root, cgroup v2 and a kernel with BTF, but no Docker and no
network: it creates a cgroup, starts a small HTTP server and client in it on
127.0.0.1 and ::1, traces that cgroup, prints the exchanges in the text view
(what "boxtap trace" prints on a terminal), then one of them as the JSON event
boxtap writes for machines, and cleans up.
Both ends live in the traced cgroup, so each response appears twice: once
leaving the server (direction egress) and once reaching the client (ingress).`
}

func (d *demoCmd) Run(ctx context.Context) error {
	if err := bpf.CheckSystem(); err != nil {
		return err
	}
	mount, err := cgroup.Mount()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding boxtap's own executable: %w", err)
	}
	dir := filepath.Join(mount, fmt.Sprintf("boxtap-demo-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("creating the demo cgroup: %w; the demo needs root (CAP_DAC_OVERRIDE to create a cgroup)", err)
	}
	defer removeCgroup(dir)
	cgfd, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening the demo cgroup: %w", err)
	}
	defer cgfd.Close()

	fmt.Fprintf(os.Stderr, "boxtap demo on %s, cgroup v2 at %s\n", kernelRelease(), mount)
	server := exec.Command(self, "demo-app", "serve")
	server.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	server.Stderr = os.Stderr
	out, err := server.StdoutPipe()
	if err != nil {
		return err
	}
	if err := server.Start(); err != nil {
		return fmt.Errorf("starting the demo server: %w", err)
	}
	defer func() {
		_ = server.Process.Signal(syscall.SIGTERM)
		_ = server.Wait()
	}()
	ports, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the demo server did not start: %w", err)
	}
	ports = strings.TrimSpace(ports)

	flags := captureFlags{RingSize: "4MiB", MaxHeader: 16384, MemoryBudget: defaultMemoryBudget, Duration: time.Minute}
	flags.Format = formatText
	if d.JSON {
		flags.Format = formatJSON
	}
	if err := flags.prepare(false, os.Stdout); err != nil {
		return err
	}
	s, err := startSession(ctx, &flags, bpf.Options{})
	if err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	info := container.Info{ID: fmt.Sprintf("demo%08d", os.Getpid()), Name: "boxtap-demo", Image: "(a cgroup made by boxtap demo)", Runtime: "cgroup", Hostname: hostname, PID: server.Process.Pid}
	red := newRedactor(&flags, os.Stderr)
	var sink output.Sink = newSink(&flags, os.Stdout, red)
	var sample *sampleSink
	if !d.JSON {
		sample = &sampleSink{Sink: sink, r: red}
		sink = sample
	}
	if err := s.addCgroup(info, dir, sink); err != nil {
		s.abort()
		return err
	}
	runDone := make(chan error, 1)
	go func() { runDone <- s.run() }()

	client := exec.Command(self, append([]string{"demo-app", "client"}, strings.Fields(ports)...)...)
	client.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	client.Stdout, client.Stderr = os.Stderr, os.Stderr
	clientErr := client.Run()
	// Stopping the server empties the cgroup; the session then drains,
	// detaches and prints its counts.
	_ = server.Process.Signal(syscall.SIGTERM)
	err = <-runDone
	if clientErr != nil {
		err = errors.Join(err, fmt.Errorf("the demo client failed: %w", clientErr))
	}
	if sample != nil && sample.json != nil {
		fmt.Printf("\nThe first exchange with a request, as the JSON event boxtap writes when stdout is not a terminal\n(--format json: one line per event; shown indented):\n\n%s\n", sample.json)
	}
	return err
}

// sampleSink keeps the first event that has a request as indented JSON, for
// the demo to show after the text view.
type sampleSink struct {
	output.Sink
	r    *output.Redactor
	mu   sync.Mutex
	json []byte
}

func (s *sampleSink) Write(e *output.Event) error {
	if err := s.Sink.Write(e); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.json == nil && e.Request != nil {
		b, err := e.MarshalPretty(s.r)
		if err != nil {
			return err
		}
		s.json = b
	}
	return nil
}

func removeCgroup(dir string) {
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 50; i++ {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// demoAppCmd is the demo's server and client, run by "boxtap demo" in the
// demo cgroup.
type demoAppCmd struct {
	Role  string   `arg:"" enum:"serve,client"`
	Ports []string `arg:"" optional:""`
}

func (a *demoAppCmd) Run(ctx context.Context) error {
	if a.Role == "serve" {
		return demoServe(ctx)
	}
	if len(a.Ports) != 2 {
		return errors.New("demo-app client needs the IPv4 and IPv6 ports")
	}
	return demoClient(a.Ports[0], a.Ports[1])
}

func demoServe(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"hello":"from inside the traced cgroup"}`)
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3cr3t-token-value", Path: "/", HttpOnly: true})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	l6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l4)
	go srv.Serve(l6)
	fmt.Printf("%d %d\n", l4.Addr().(*net.TCPAddr).Port, l6.Addr().(*net.TCPAddr).Port)
	<-ctx.Done()
	return srv.Close()
}

func demoClient(p4, p6 string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	reqs := []struct{ method, url string }{
		{"GET", "http://127.0.0.1:" + p4 + "/"},
		{"GET", "http://127.0.0.1:" + p4 + "/missing"},
		{"GET", "http://127.0.0.1:" + p4 + "/stream"},
		{"POST", "http://127.0.0.1:" + p4 + "/login"},
		{"HEAD", "http://127.0.0.1:" + p4 + "/"},
		{"GET", "http://[::1]:" + p6 + "/"},
	}
	for _, r := range reqs {
		req, err := http.NewRequest(r.method, r.url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer demo-secret")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Stay alive until boxtap has read the records, so that it can still
	// name this process's executable (it reads /proc/PID/exe).
	time.Sleep(300 * time.Millisecond)
	return nil
}
