package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// server is one nginx container on the host network.
type server struct {
	name   string
	port   int // HTTP/1.1, also for nginx's status page
	h2Port int // HTTP/2 cleartext with prior knowledge; 0: none
	// tlsPort serves "/" over HTTPS (https.go).
	tlsPort int
}

func (s *server) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.port) + path
}

func (s *server) tlsURL(path string) string {
	return "https://127.0.0.1:" + strconv.Itoa(s.tlsPort) + path
}

func (s *server) h2URL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.h2Port) + path
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs an nginx container named name from image, writing its
// config under dir, and waits until it answers. With h2c it also listens
// on a second port for HTTP/2 cleartext (prior knowledge).
func startServer(ctx context.Context, image, name, dir string, h2c bool) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	h2Port := 0
	if h2c {
		if h2Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	tlsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	certs, err := benchCertificate(dir)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(port, h2Port, tlsPort)), 0o644); err != nil {
		return nil, fmt.Errorf("writing nginx config: %w", err)
	}
	removeContainer(name)
	out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--name", name, "--network", "host",
		"-v", conf+":/etc/nginx/nginx.conf:ro", "-v", certs+":"+certDir+":ro", image,
		nginxBinary, "-c", "/etc/nginx/nginx.conf").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("starting nginx container %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	s := &server{name: name, port: port, h2Port: h2Port, tlsPort: tlsPort}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.status(); err == nil {
			return s, nil
		} else if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", "--tail", "20", name).CombinedOutput()
			return nil, fmt.Errorf("nginx in %s does not answer on port %d: %w; its log: %s", name, port, err, logs)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeContainer deletes a container of ours, if it exists.
func removeContainer(name string) {
	_ = exec.Command("docker", "rm", "-f", name).Run()
}

// stubStatus is what nginx's stub_status page counts.
type stubStatus struct {
	active   uint64 // open client connections, the status request's own included
	requests uint64 // requests read so far, the status request itself included
}

// status reads nginx's stub_status page.
func (s *server) status() (stubStatus, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(s.url("/nginx_status"))
	if err != nil {
		return stubStatus{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return stubStatus{}, err
	}
	return parseStubStatus(string(b))
}

// requests reads nginx's request counter. The status request itself is
// already counted in the value it returns.
func (s *server) requests() (uint64, error) {
	st, err := s.status()
	return st.requests, err
}

// settledRequests reads the request counter once nginx has no connection
// left but the status request's own, so that requests wrk sent just before
// it exited, and that nginx answers after wrk is gone, are counted too (boxtap
// traces them). Every status read in between is a request nginx counts and
// boxtap traces as well. It gives up, with an error, after 10 s.
func (s *server) settledRequests(ctx context.Context) (uint64, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.status()
		if err != nil {
			return 0, err
		}
		if st.active <= 1 {
			return st.requests, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("nginx still has %d connections open 10 s after the load ended", st.active)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// parseStubStatus reads a stub_status page:
//
//	Active connections: 1
//	server accepts handled requests
//	 10 10 42
func parseStubStatus(page string) (stubStatus, error) {
	var st stubStatus
	haveActive, haveRequests := false, false
	lines := strings.Split(page, "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "Active connections:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return st, fmt.Errorf("stub_status: bad active connections line %q", l)
			}
			st.active, haveActive = n, true
		}
		if strings.TrimSpace(l) == "server accepts handled requests" && i+1 < len(lines) {
			f := strings.Fields(lines[i+1])
			if len(f) == 3 {
				n, err := strconv.ParseUint(f[2], 10, 64)
				if err != nil {
					return st, fmt.Errorf("stub_status: bad counters line %q", lines[i+1])
				}
				st.requests, haveRequests = n, true
			}
		}
	}
	if !haveActive || !haveRequests {
		return st, fmt.Errorf("not a stub_status page: %q", page)
	}
	return st, nil
}
