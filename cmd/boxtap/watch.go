package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	dockerapi "github.com/docker/docker/client"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd"
	"github.com/boxtap/boxtap/runtime/docker"
	"github.com/boxtap/boxtap/tracer"
)

type watchCmd struct {
	runtimeFlags
	Name  []string `name:"name" sep:"none" help:"Only containers whose name matches this glob (repeatable: any may match)." placeholder:"GLOB"`
	Label []string `name:"label" sep:"none" help:"Only containers with this label, KEY=VALUE or just KEY (repeatable: all must match)." placeholder:"KEY=VALUE"`
	Image []string `name:"image" sep:"none" help:"Only containers whose image matches this glob, e.g. 'nginx*' (repeatable: any may match)." placeholder:"GLOB"`
	Debug bool     `help:"Print how long after its start each container was attached, and runtime connection details."`
	outputFlags
	captureFlags
}

func (watchCmd) Help() string {
	return `Traces every running container and every container that starts later, as
Docker and containerd report them, with one eBPF collection for all. Each
container is detached when it stops. When a daemon restarts, boxtap
reconnects and traces what started meanwhile.

Examples:
  boxtap watch                                     everything, to stdout
  boxtap watch --output-dir /var/log/boxtap        one file per container, <id>.json
  boxtap watch --namespace k8s.io --label io.kubernetes.pod.namespace=shop
  boxtap watch --name 'web-*' --image 'nginx*' --debug

A container is traced from the moment it is attached, shortly after it
starts: traffic in that gap is not seen (--debug prints the gap).`
}

func (c *watchCmd) Run(ctx context.Context) error {
	if err := bpf.CheckSystem(); err != nil {
		return err
	}
	if err := c.outputFlags.check(&c.captureFlags); err != nil {
		return err
	}
	sel, err := newSelector(c.Name, c.Label, c.Image)
	if err != nil {
		return err
	}
	if err := c.runtimeFlags.check(); err != nil {
		return err
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
	s.keepAlive = true
	w := &watcher{s: s, out: out, sel: sel, flags: &c.runtimeFlags, debug: c.Debug, stderr: os.Stderr, tracked: map[string]bool{}}
	s.onRemoved = func(tg *tracer.Target) { w.untrack(trackKey(tg.Info)) }
	var wg sync.WaitGroup
	if c.wantDocker() {
		wg.Go(func() { w.follow(s.ctx, &dockerSource{w: w}) })
	}
	if c.wantContainerd() {
		wg.Go(func() { w.follow(s.ctx, &containerdSource{w: w}) })
	}
	err = s.run()
	wg.Wait()
	if ferr := out.close(); ferr != nil && err == nil {
		err = fmt.Errorf("writing events: %w", ferr)
	}
	return err
}

// watcher attaches to containers as runtimes report them.
type watcher struct {
	s      *session
	out    *eventOutput
	sel    selector
	flags  *runtimeFlags
	debug  bool
	stderr io.Writer

	mu      sync.Mutex
	tracked map[string]bool // trackKey of containers attached (or being attached)
}

// trackKey names a container across runtimes and namespaces: containerd IDs
// are unique only within a namespace (Docker's, "moby", is Docker's own).
func trackKey(info container.Info) string {
	if info.Namespace == "" || info.Namespace == output.DockerNamespace {
		return info.ID
	}
	return info.Namespace + "@" + info.ID
}

func (w *watcher) debugf(format string, args ...any) {
	if w.debug {
		fmt.Fprintf(w.stderr, "debug: "+format+"\n", args...)
	}
}

func (w *watcher) untrack(id string) {
	w.mu.Lock()
	delete(w.tracked, id)
	w.mu.Unlock()
}

// consider attaches to a running container if the selection matches and it
// is not traced yet. started is when the runtime reported its start (zero
// for containers found by listing).
func (w *watcher) consider(info container.Info, started time.Time, via string) {
	if !w.sel.match(info) {
		w.debugf("skipping %s (%s): not selected", display.Quote(info.Name), info.ShortID())
		return
	}
	w.mu.Lock()
	key := trackKey(info)
	if w.tracked[key] {
		w.mu.Unlock()
		return
	}
	w.tracked[key] = true
	w.mu.Unlock()
	sink, err := w.out.sinkFor(info)
	if err == nil {
		if err = w.s.add(info, sink); err != nil {
			sink.Close()
		}
	}
	if err != nil {
		w.untrack(key)
		switch {
		case errors.Is(err, errSessionEnded):
		case !processAlive(info.PID):
			w.debugf("%s (%s) exited before it could be attached", display.Quote(info.Name), info.ShortID())
		default:
			fmt.Fprintf(w.stderr, "boxtap: %v\n", err)
		}
		return
	}
	if !started.IsZero() {
		w.debugf("attached %s (%s) %s after its start (%s event)", display.Quote(info.Name), info.ShortID(), time.Since(started).Round(time.Microsecond), via)
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// source is one runtime that watch follows.
type source interface {
	name() string
	// connect opens a connection.
	connect(ctx context.Context) error
	// run subscribes to start events, then lists running containers, then
	// handles events until the connection breaks or ctx ends.
	run(ctx context.Context) error
	close()
}

// follow keeps a source connected: it reconnects with backoff after a
// daemon restart and resynchronises by listing again.
func (w *watcher) follow(ctx context.Context, src source) {
	const maxBackoff = 5 * time.Second
	backoff := 250 * time.Millisecond
	down := false // an outage was reported
	for ctx.Err() == nil {
		err := src.connect(ctx)
		if err == nil {
			if down {
				fmt.Fprintf(w.stderr, "boxtap: reconnected to %s; resynchronising\n", src.name())
			} else {
				w.debugf("connected to %s", src.name())
			}
			down = false
			backoff = 250 * time.Millisecond
			err = src.run(ctx)
			src.close()
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(w.stderr, "boxtap: lost %s: %v; reconnecting\n", src.name(), oneLine(err))
			down = true
		} else if !down {
			// In auto mode a runtime may simply not exist here: retry quietly.
			if w.flags.Runtime != "auto" || w.debug {
				fmt.Fprintf(w.stderr, "boxtap: %s not reachable: %v; retrying\n", src.name(), oneLine(err))
			}
			down = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func oneLine(err error) string {
	if err == nil {
		return "connection closed"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// dockerSource follows Docker's container start events.
type dockerSource struct {
	w      *watcher
	cli    *docker.Client
	events *dockerapi.Client
}

func (d *dockerSource) name() string {
	if d.cli != nil {
		return "Docker at " + d.cli.Host()
	}
	if d.w.flags.DockerHost != "" {
		return "Docker at " + d.w.flags.DockerHost
	}
	return "Docker"
}

func (d *dockerSource) connect(ctx context.Context) error {
	cli, err := docker.New(ctx, d.w.flags.DockerHost)
	if err != nil {
		return err
	}
	opts := []dockerapi.Opt{dockerapi.FromEnv, dockerapi.WithAPIVersionNegotiation(), dockerapi.WithHost(cli.Host())}
	ev, err := dockerapi.NewClientWithOpts(opts...)
	if err != nil {
		cli.Close()
		return fmt.Errorf("Docker events client: %w", err)
	}
	d.cli, d.events = cli, ev
	return nil
}

func (d *dockerSource) close() {
	if d.cli != nil {
		d.cli.Close()
	}
	if d.events != nil {
		d.events.Close()
	}
}

func (d *dockerSource) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := d.events.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionStart)),
	)})
	running, err := d.cli.List(ctx)
	if err != nil {
		return err
	}
	d.w.debugf("%s: %d running containers", d.name(), len(running))
	for _, info := range running {
		d.w.consider(info, time.Time{}, "list")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case m := <-msgs:
			id := m.Actor.ID
			if id == "" {
				continue
			}
			info, err := d.cli.Resolve(ctx, id)
			if err != nil {
				d.w.debugf("Docker container %.12s started but cannot be inspected: %v", id, err)
				continue
			}
			d.w.consider(info, time.Unix(0, m.TimeNano), "docker start")
		}
	}
}

// containerdSource follows containerd's task start events.
type containerdSource struct {
	w   *watcher
	cli *containerd.Client
}

func (c *containerdSource) name() string { return "containerd at " + c.w.flags.ContainerdAddress }

func (c *containerdSource) connect(ctx context.Context) error {
	cli, err := containerd.New(ctx, c.w.flags.ContainerdAddress, c.w.flags.Namespace)
	if err != nil {
		return err
	}
	c.cli = cli
	return nil
}

func (c *containerdSource) close() {
	if c.cli != nil {
		c.cli.Close()
		c.cli = nil
	}
}

// skip is the namespaces left to the Docker source.
func (c *containerdSource) skip(ns string) bool {
	return ns == containerd.DockerNamespace && c.w.flags.wantDocker()
}

func (c *containerdSource) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	starts, errs := c.cli.Events(ctx)
	var skip []string
	if c.w.flags.wantDocker() {
		skip = []string{containerd.DockerNamespace}
	}
	running, err := c.cli.List(ctx, skip...)
	if err != nil {
		return err
	}
	c.w.debugf("%s: %d running containers", c.name(), len(running))
	for _, info := range running {
		c.w.consider(dockerNamed(ctx, c.w.flags.DockerHost, info), time.Time{}, "list")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case ev := <-starts:
			if c.skip(ev.Namespace) {
				continue
			}
			info, err := c.cli.Inspect(ctx, ev.Ref)
			if err != nil {
				c.w.debugf("containerd container %s/%s started but cannot be inspected: %v", display.Quote(ev.Namespace), display.Quote(ev.ID), err)
				continue
			}
			c.w.consider(dockerNamed(ctx, c.w.flags.DockerHost, info), ev.Time, "containerd task start")
		}
	}
}

// selector is the --name/--label/--image selection. Values of one flag are
// alternatives, except labels, which must all match; different flags must
// all match.
type selector struct {
	names  []string
	images []string
	labels [][2]string // key, value; value "" with hasValue false means presence
	hasVal []bool
}

// globSlash stands for '/' while matching, so that '*' also matches across
// path separators (image names have several).
const globSlash = "\x00"

func newSelector(names, labels, images []string) (selector, error) {
	var s selector
	for _, g := range append(append([]string(nil), names...), images...) {
		if _, err := path.Match(strings.ReplaceAll(g, "/", globSlash), ""); err != nil {
			return selector{}, fmt.Errorf("invalid glob %q: %v; use *, ? and [...] classes", g, err)
		}
	}
	s.names, s.images = names, images
	for _, l := range labels {
		k, v, has := strings.Cut(l, "=")
		if k == "" {
			return selector{}, fmt.Errorf("invalid --label %q: use KEY=VALUE or KEY", l)
		}
		s.labels = append(s.labels, [2]string{k, v})
		s.hasVal = append(s.hasVal, has)
	}
	return s, nil
}

func globMatch(pattern, s string) bool {
	ok, _ := path.Match(strings.ReplaceAll(pattern, "/", globSlash), strings.ReplaceAll(s, "/", globSlash))
	return ok
}

func anyGlob(patterns []string, candidates ...string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		for _, c := range candidates {
			if c != "" && globMatch(p, c) {
				return true
			}
		}
	}
	return false
}

// shortImage drops a default registry prefix: "docker.io/library/nginx:1"
// -> "nginx:1", "docker.io/me/app" -> "me/app".
func shortImage(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	return strings.TrimPrefix(ref, "library/")
}

func (s selector) match(info container.Info) bool {
	if !anyGlob(s.names, info.Name) {
		return false
	}
	if !anyGlob(s.images, info.Image, shortImage(info.Image)) {
		return false
	}
	for i, kv := range s.labels {
		v, ok := info.Labels[kv[0]]
		if !ok || (s.hasVal[i] && v != kv[1]) {
			return false
		}
	}
	return true
}
