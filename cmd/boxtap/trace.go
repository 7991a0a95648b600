package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/httpstream"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd"
	"github.com/boxtap/boxtap/runtime/docker"
)

type traceCmd struct {
	Containers []string `arg:"" name:"container" help:"Container names, full IDs or unique ID prefixes (Docker, or containerd: ID, Kubernetes container name)."`
	runtimeFlags
	outputFlags
	captureFlags
}

// runtimeFlags pick the container runtimes to ask.
type runtimeFlags struct {
	Runtime           string   `enum:"auto,docker,containerd" default:"auto" help:"Container runtime to ask: auto (Docker first, then containerd), docker or containerd."`
	DockerHost        string   `name:"docker-host" help:"Docker daemon address (default: $DOCKER_HOST or unix:///var/run/docker.sock)." placeholder:"URL"`
	ContainerdAddress string   `name:"containerd-address" default:"/run/containerd/containerd.sock" help:"containerd socket." placeholder:"PATH"`
	Namespace         []string `name:"namespace" sep:"none" help:"Only containers in this containerd namespace (repeatable; default: all). Docker's containers are in \"moby\", Kubernetes' in \"k8s.io\"." placeholder:"NS"`
}

// outputFlags choose per-container files instead of stdout.
type outputFlags struct {
	OutputDir string   `name:"output-dir" help:"Write one JSON Lines file per container, DIR/<id>.json (DIR/<namespace>@<id>.json for a containerd namespace other than Docker's; mode 0600, DIR mode 0700), plus DIR/by-name/ links, instead of stdout. SIGHUP reopens the files (logrotate)." placeholder:"DIR" type:"path"`
	MaxSize   byteSize `name:"max-size" default:"0" help:"With --output-dir: rotate a container's file before it grows past this size, e.g. 50M (0: never)." placeholder:"SIZE"`
	MaxFiles  int      `name:"max-files" default:"5" help:"With --output-dir and --max-size: rotated files kept per container (<id>.json.1 is the newest)." placeholder:"N"`
	Output    string   `name:"output" enum:"stdout,none" default:"stdout" help:"Where events go: stdout, or none (write no events: the cheapest way to feed --metrics-addr or --otlp-endpoint on a busy server)." placeholder:"WHERE"`
}

// byteSize is a size flag: a number of bytes with an optional K, M or G
// suffix (powers of 1024).
type byteSize int64

// UnmarshalText parses "100", "64K", "50M", "1G" (case-insensitive, an
// optional trailing "B" or "iB").
func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(text)))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B")
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid size %q: use a number of bytes with an optional K, M or G suffix, e.g. 50M", string(text))
	}
	*b = byteSize(n * mult)
	return nil
}

func (traceCmd) Help() string {
	return `Examples:
  boxtap trace web                     every response of container "web", one JSON line each
  boxtap trace web api --count 100     two containers; exit after 100 events
  boxtap trace 3f2a --duration 30s     by unique ID prefix, for 30 seconds
  boxtap trace web --format pretty     indented JSON, for reading
  boxtap trace web --status 5xx --min-latency 100ms
                                       only exchanges that failed AND were slow
  boxtap trace web --summary           a table of routes, counts and latency percentiles at exit
  boxtap trace --runtime containerd --namespace k8s.io nginx
                                       a Kubernetes container, by its container name
  boxtap trace web --output-dir /var/log/boxtap --max-size 50M
                                       one file per container, rotated at 50 MiB
  boxtap trace web | jq 'select(.args[1].value.status_code >= 500)'

On a terminal boxtap prints one aligned line per exchange (--format text);
otherwise, and with --output-dir, one Tracee JSON event per line (--format
json). Filters (--status, --method, --path, --host, --min-latency,
--direction) are repeatable: values of one flag are alternatives, different
flags must all match.

One line on stderr says "tracing <name> (<id>)" once a container's programs
are attached. boxtap exits when every traced container has stopped, on
SIGINT/SIGTERM, or after --count/--duration, and then prints its counts.`
}

func (c *traceCmd) Run(ctx context.Context) error {
	if err := bpf.CheckSystem(); err != nil {
		return err
	}
	if err := c.outputFlags.check(&c.captureFlags); err != nil {
		return err
	}
	rt, err := openRuntimes(ctx, &c.runtimeFlags, false)
	if err != nil {
		return err
	}
	defer rt.close()
	infos := make([]container.Info, 0, len(c.Containers))
	seen := map[string]bool{}
	for _, q := range c.Containers {
		info, err := rt.resolve(ctx, q)
		if err != nil {
			return err
		}
		if !seen[info.ID] {
			seen[info.ID] = true
			infos = append(infos, info)
		}
	}
	out, err := openOutput(&c.outputFlags, &c.captureFlags, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	s, err := startSession(ctx, &c.captureFlags, bpf.Options{})
	if err != nil {
		out.close()
		return err
	}
	for _, info := range infos {
		sink, err := out.sinkFor(info)
		if err == nil {
			err = s.add(info, sink)
			if err != nil {
				sink.Close()
			}
		}
		if err != nil {
			s.abort()
			out.close()
			return err
		}
	}
	err = s.run()
	if ferr := out.close(); ferr != nil && err == nil {
		err = fmt.Errorf("writing events: %w", ferr)
	}
	return err
}

func httpLimits(f *captureFlags) httpstream.Limits {
	return httpstream.Limits{MaxHeaderBytes: f.MaxHeader}
}

// runtimes are the container runtimes a command asks.
type runtimes struct {
	flags  *runtimeFlags
	docker *docker.Client     // nil when not asked or unreachable (auto)
	ctrd   *containerd.Client // likewise
	// dockerEnabled: Docker is asked, so containerd's moby namespace is
	// left to it (each Docker container is reported once, by its name).
	dockerEnabled bool
	// unreachable holds why an asked runtime did not answer (auto mode).
	unreachable []error
}

// namespaceAllowed reports whether --namespace selects ns.
func (f *runtimeFlags) namespaceAllowed(ns string) bool {
	return len(f.Namespace) == 0 || slices.Contains(f.Namespace, ns)
}

func (f *runtimeFlags) wantDocker() bool {
	return f.Runtime != "containerd" && f.namespaceAllowed(containerd.DockerNamespace)
}

func (f *runtimeFlags) wantContainerd() bool { return f.Runtime != "docker" }

// check rejects --runtime docker with namespaces that exclude Docker's.
func (f *runtimeFlags) check() error {
	if f.Runtime == "docker" && !f.wantDocker() {
		return fmt.Errorf("--runtime docker with --namespace %s: Docker's containers are in namespace %q; add --namespace %s or use --runtime containerd",
			strings.Join(f.Namespace, ","), containerd.DockerNamespace, containerd.DockerNamespace)
	}
	return nil
}

// openRuntimes connects to the runtimes that --runtime selects. In auto
// mode a runtime that does not answer is skipped, unless none answers;
// lenient (watch) also accepts none, to retry later.
func openRuntimes(ctx context.Context, f *runtimeFlags, lenient bool) (*runtimes, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	r := &runtimes{flags: f, dockerEnabled: f.wantDocker()}
	var errs []error
	if f.wantDocker() {
		c, err := docker.New(ctx, f.DockerHost)
		if err != nil {
			if f.Runtime == "docker" && !lenient {
				return nil, err
			}
			errs = append(errs, err)
		} else {
			r.docker = c
		}
	}
	if f.wantContainerd() {
		c, err := containerd.New(ctx, f.ContainerdAddress, f.Namespace)
		if err != nil {
			if f.Runtime == "containerd" && !lenient {
				r.close()
				return nil, err
			}
			errs = append(errs, err)
		} else {
			r.ctrd = c
		}
	}
	if r.docker == nil && r.ctrd == nil && !lenient {
		return nil, fmt.Errorf("no container runtime answers: %w", errors.Join(errs...))
	}
	r.unreachable = errs
	return r, nil
}

func (r *runtimes) close() {
	if r.docker != nil {
		r.docker.Close()
		r.docker = nil
	}
	if r.ctrd != nil {
		r.ctrd.Close()
		r.ctrd = nil
	}
}

// ctrdSkip is the containerd namespaces left to Docker.
func (r *runtimes) ctrdSkip() []string {
	if r.dockerEnabled {
		return []string{containerd.DockerNamespace}
	}
	return nil
}

// resolve finds the running container query designates: Docker first,
// then containerd.
func (r *runtimes) resolve(ctx context.Context, query string) (container.Info, error) {
	var nf *container.NotFoundError
	var searched []string
	if r.docker != nil {
		info, err := r.docker.Resolve(ctx, query)
		if err == nil || !errors.As(err, &nf) {
			return info, err
		}
		searched = append(searched, "Docker at "+r.docker.Host())
	}
	if r.ctrd != nil {
		// With Docker down, look in its containerd namespace too: a Docker
		// container can still be found there by ID.
		var skip []string
		if r.docker != nil {
			skip = r.ctrdSkip()
		}
		info, err := r.ctrd.Resolve(ctx, query, skip...)
		if err == nil {
			return dockerNamed(ctx, r.flags.DockerHost, info), nil
		}
		if !errors.As(err, &nf) {
			return info, err
		}
		where := "all namespaces"
		if len(r.flags.Namespace) > 0 {
			where = "namespaces " + strings.Join(r.flags.Namespace, ", ")
		}
		searched = append(searched, "containerd at "+r.ctrd.Address()+" ("+where+")")
	}
	if len(r.unreachable) > 0 {
		// The container may well live in the runtime that did not answer:
		// that is the cause to report.
		return container.Info{}, fmt.Errorf("no running container matches %q in %s, and %w",
			query, strings.Join(searched, " or "), errors.Join(r.unreachable...))
	}
	return container.Info{}, fmt.Errorf("no running container matches %q in %s: give a name or ID as `docker ps` or `ctr -n NS task ls` shows it, or pick the runtime with --runtime/--namespace",
		query, strings.Join(searched, " or "))
}

// dockerNamed describes a container found in containerd's moby namespace
// (a Docker container, when Docker is not asked directly) as Docker does,
// with its Docker name, if Docker answers; otherwise it returns info.
func dockerNamed(ctx context.Context, host string, info container.Info) container.Info {
	if info.Namespace != containerd.DockerNamespace {
		return info
	}
	cli, err := docker.New(ctx, host)
	if err != nil {
		return info
	}
	defer cli.Close()
	d, err := cli.Resolve(ctx, info.ID)
	if err != nil {
		return info
	}
	return d
}

// check validates the output flags.
func (f *outputFlags) check(cf *captureFlags) error {
	if err := cf.prepare(f.OutputDir != "", os.Stdout); err != nil {
		return err
	}
	if err := f.checkNone(cf); err != nil {
		return err
	}
	if f.OutputDir == "" {
		if f.MaxSize != 0 {
			return errors.New("--max-size needs --output-dir")
		}
		return nil
	}
	if f.MaxFiles < 0 {
		return fmt.Errorf("--max-files %d: must be 0 or more", f.MaxFiles)
	}
	return nil
}

// eventOutput hands out a sink per container: a file in --output-dir, or
// the shared stdout sink.
type eventOutput struct {
	view   *viewFlags // the summary table, if any
	dir    *output.Dir
	shared output.Sink
	stderr io.Writer
	hup    chan os.Signal
	done   chan struct{}
}

func openOutput(f *outputFlags, cf *captureFlags, stdout, stderr io.Writer) (*eventOutput, error) {
	red := newRedactor(cf, stderr)
	o := &eventOutput{stderr: stderr, view: &cf.viewFlags}
	if f.Output == "none" {
		o.shared = cf.withSummary(discardSink{})
		return o, nil
	}
	if f.OutputDir == "" {
		o.shared = newSink(cf, stdout, red)
		return o, nil
	}
	dir, err := output.OpenDir(f.OutputDir, output.DirOptions{MaxSize: int64(f.MaxSize), MaxFiles: f.MaxFiles, Redactor: red})
	if err != nil {
		return nil, err
	}
	o.dir = dir
	o.hup = make(chan os.Signal, 1)
	o.done = make(chan struct{})
	signal.Notify(o.hup, syscall.SIGHUP)
	go o.reopenOnHUP()
	return o, nil
}

func (o *eventOutput) reopenOnHUP() {
	for {
		select {
		case <-o.done:
			return
		case <-o.hup:
			if err := o.dir.Reopen(); err != nil {
				fmt.Fprintln(o.stderr, "boxtap: reopening output files:", err)
			}
		}
	}
}

// sinkFor returns the sink of one container; closing it closes its file.
func (o *eventOutput) sinkFor(info container.Info) (output.Sink, error) {
	if o.dir == nil {
		return sharedSink{o.shared}, nil
	}
	s, err := o.dir.SinkFor(output.Owner{Namespace: info.Namespace, ID: info.ID, Name: info.Name, PodNamespace: info.Pod.Namespace, PodName: info.Pod.Name})
	if err != nil {
		return nil, fmt.Errorf("output file of %s (%s): %w", display.Quote(info.Name), info.ShortID(), err)
	}
	return o.view.withSummary(s), nil
}

// close flushes everything and stops the SIGHUP handler.
func (o *eventOutput) close() error {
	if o.dir == nil {
		return o.shared.Close()
	}
	signal.Stop(o.hup)
	close(o.done)
	return o.dir.Close()
}
