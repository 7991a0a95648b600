// Package containerd finds containers through containerd's API, across its
// namespaces, and describes them as container.Info. It also streams task
// start events for `boxtap watch`.
//
// It uses containerd's v2 Go client, which talks to containerd 1.6 (Debian
// 12) and later for everything used here: namespaces, containers, tasks,
// images and events.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxtap/boxtap/runtime/container"
)

// RuntimeName is the container.Info.Runtime value for containers found
// through containerd.
const RuntimeName = "containerd"

// DefaultAddress is containerd's default socket.
const DefaultAddress = "/run/containerd/containerd.sock"

// DockerNamespace is the containerd namespace where Docker keeps its
// containers; their IDs are Docker's IDs.
const DockerNamespace = "moby"

// nameLabel is the label nerdctl stores a container's name in.
const nameLabel = "nerdctl/name"

// callTimeout bounds each request to the daemon.
const callTimeout = 10 * time.Second

// Client looks up containers in one containerd daemon.
type Client struct {
	api        *ctrd.Client
	address    string
	namespaces []string // only these namespaces; empty: all
}

// New connects to containerd at address (a unix socket path; "" means
// DefaultAddress) and checks that it answers. Only the given namespaces are
// searched; none means every namespace.
func New(ctx context.Context, address string, onlyNamespaces []string) (*Client, error) {
	if address == "" {
		address = DefaultAddress
	}
	address = strings.TrimPrefix(address, "unix://")
	// gRPC retries a missing socket until the deadline; dial once first so
	// the common mistakes are reported at once.
	var d net.Dialer
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := d.DialContext(dctx, "unix", address)
	dcancel()
	if err != nil {
		return nil, fmt.Errorf("cannot reach containerd at %s: %s; start containerd or pass --containerd-address", address, oneLine(err))
	}
	_ = conn.Close()
	api, err := ctrd.New(address, ctrd.WithTimeout(callTimeout))
	if err != nil {
		return nil, fmt.Errorf("invalid containerd address %s: %w; pass --containerd-address like %s", address, err, DefaultAddress)
	}
	c := &Client{api: api, address: address, namespaces: slices.Clone(onlyNamespaces)}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := api.Version(vctx); err != nil {
		_ = api.Close()
		return nil, fmt.Errorf("cannot reach containerd at %s: %s; start containerd or pass --containerd-address", address, reachCause(vctx, address, err))
	}
	return c, nil
}

// reachCause names why a unix socket cannot be used (missing, refused,
// permission denied) rather than gRPC's generic message.
func reachCause(ctx context.Context, path string, err error) string {
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, "unix", path)
	if dialErr != nil {
		return oneLine(dialErr)
	}
	_ = conn.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within 5s"
	}
	return oneLine(err)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// Close releases the connection.
func (c *Client) Close() error { return c.api.Close() }

// Address is the socket in use.
func (c *Client) Address() string { return c.address }

// API returns the underlying containerd client (for tests and tools that
// create containers).
func (c *Client) API() *ctrd.Client { return c.api }

// Namespaces lists the namespaces that are searched: the ones given to New
// that exist, or every namespace.
func (c *Client) Namespaces(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	all, err := c.api.NamespaceService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containerd namespaces at %s: %w", c.address, err)
	}
	if len(c.namespaces) == 0 {
		slices.Sort(all)
		return all, nil
	}
	var out []string
	for _, ns := range c.namespaces {
		if slices.Contains(all, ns) && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out, nil
}

// Searched reports whether namespace ns is searched by this client.
func (c *Client) Searched(ns string) bool {
	return len(c.namespaces) == 0 || slices.Contains(c.namespaces, ns)
}

// Ref designates one container.
type Ref struct {
	Namespace string
	ID        string
}

// running lists the running tasks of one namespace.
func (c *Client) running(ctx context.Context, ns string) ([]*tasktypes.Process, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, ns), callTimeout)
	defer cancel()
	resp, err := c.api.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list containerd tasks in namespace %s: %w", ns, err)
	}
	var out []*tasktypes.Process
	for _, p := range resp.Tasks {
		if p.Status == tasktypes.Status_RUNNING && p.Pid > 0 {
			out = append(out, p)
		}
	}
	return out, nil
}

// List returns the running containers of the searched namespaces, skipping
// namespaces in skip (e.g. DockerNamespace when Docker is asked directly).
func (c *Client) List(ctx context.Context, skip ...string) ([]container.Info, error) {
	nss, err := c.Namespaces(ctx)
	if err != nil {
		return nil, err
	}
	var infos []container.Info
	for _, ns := range nss {
		if slices.Contains(skip, ns) {
			continue
		}
		procs, err := c.running(ctx, ns)
		if err != nil {
			return nil, err
		}
		for _, p := range procs {
			info, err := c.Inspect(ctx, Ref{Namespace: ns, ID: taskContainerID(p)})
			if err != nil {
				if errdefs.IsNotFound(err) || errors.Is(err, ErrNotRunning) {
					continue // gone since the listing
				}
				return nil, err
			}
			infos = append(infos, info)
		}
	}
	return infos, nil
}

func taskContainerID(p *tasktypes.Process) string {
	if p.ContainerID != "" {
		return p.ContainerID
	}
	return p.ID
}

// Resolve finds the running container that query designates, in the
// searched namespaces (skipping those in skip): a name (see Info.Name), a
// full ID or a unique ID prefix, as container.Match defines.
func (c *Client) Resolve(ctx context.Context, query string, skip ...string) (container.Info, error) {
	nss, err := c.Namespaces(ctx)
	if err != nil {
		return container.Info{}, err
	}
	var candidates []container.Info
	for _, ns := range nss {
		if slices.Contains(skip, ns) {
			continue
		}
		procs, err := c.running(ctx, ns)
		if err != nil {
			return container.Info{}, err
		}
		for _, p := range procs {
			id := taskContainerID(p)
			labels := c.labels(ctx, ns, id)
			candidates = append(candidates, container.Info{ID: id, Namespace: ns, Name: nameOf(id, labels), Runtime: RuntimeName})
		}
	}
	m, err := container.Match(query, candidates)
	if err != nil {
		return container.Info{}, err
	}
	return c.Inspect(ctx, Ref{Namespace: m.Namespace, ID: m.ID})
}

func (c *Client) labels(ctx context.Context, ns, id string) map[string]string {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, ns), callTimeout)
	defer cancel()
	rec, err := c.api.ContainerService().Get(ctx, id)
	if err != nil {
		return nil
	}
	return rec.Labels
}

// nameOf picks a container's name: the Kubernetes container name, nerdctl's
// name label, or the ID.
func nameOf(id string, labels map[string]string) string {
	if n := labels[container.LabelContainerName]; n != "" {
		return n
	}
	if n := labels[nameLabel]; n != "" {
		return n
	}
	return id
}

// ErrNotRunning is returned by Inspect for a container without a running task.
var ErrNotRunning = errors.New("container has no running task")

// Inspect describes one container; it must have a running task.
func (c *Client) Inspect(ctx context.Context, ref Ref) (container.Info, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, ref.Namespace), callTimeout)
	defer cancel()
	rec, err := c.api.ContainerService().Get(ctx, ref.ID)
	if err != nil {
		return container.Info{}, fmt.Errorf("inspect containerd container %s/%s: %w", ref.Namespace, ref.ID, err)
	}
	info := infoFromRecord(ref.Namespace, rec)
	resp, err := c.api.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: ref.ID})
	if err != nil {
		if errdefs.IsNotFound(err) {
			return container.Info{}, fmt.Errorf("containerd container %s/%s: %w", ref.Namespace, ref.ID, ErrNotRunning)
		}
		return container.Info{}, fmt.Errorf("get task of containerd container %s/%s: %w", ref.Namespace, ref.ID, err)
	}
	if resp.Process == nil || resp.Process.Status != tasktypes.Status_RUNNING || resp.Process.Pid == 0 {
		return container.Info{}, fmt.Errorf("containerd container %s/%s: %w", ref.Namespace, ref.ID, ErrNotRunning)
	}
	info.PID = int(resp.Process.Pid)
	if info.Image != "" {
		if img, err := c.api.ImageService().Get(ctx, info.Image); err == nil {
			info.ImageDigest = img.Target.Digest.String()
		}
	}
	return info, nil
}

// infoFromRecord converts containerd's container record. The PID and image
// digest are left to the caller.
func infoFromRecord(ns string, rec containers.Container) container.Info {
	info := container.Info{
		ID:        rec.ID,
		Name:      nameOf(rec.ID, rec.Labels),
		Image:     rec.Image,
		Runtime:   RuntimeName,
		Namespace: ns,
		Labels:    rec.Labels,
		Pod:       container.PodFromLabels(rec.Labels),
	}
	if rec.Spec != nil {
		if v, err := typeurl.UnmarshalAny(rec.Spec); err == nil {
			if spec, ok := v.(*specs.Spec); ok {
				info.Hostname = spec.Hostname
				if info.Hostname == "" && !hasUTSNamespace(spec) {
					info.Hostname, _ = os.Hostname() // shares the host's UTS namespace
				}
			}
		}
	}
	return info
}

// TaskStart is a task start (or a daemon's report of one) seen in the event
// stream.
type TaskStart struct {
	Ref
	PID  uint32
	Time time.Time // when containerd published the event
}

// Events streams task starts of the searched namespaces until ctx ends or
// the connection breaks. The error channel receives one value (nil when ctx
// ended) and then both channels are abandoned.
func (c *Client) Events(ctx context.Context) (<-chan TaskStart, <-chan error) {
	out := make(chan TaskStart, 64)
	errc := make(chan error, 1)
	envs, errs := c.api.Subscribe(ctx, `topic=="/tasks/start"`)
	go func() {
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case err := <-errs:
				if err == nil && ctx.Err() == nil {
					err = errors.New("event stream closed")
				}
				if err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("containerd events at %s: %w", c.address, err)
				} else {
					errc <- nil
				}
				return
			case env, ok := <-envs:
				if !ok {
					errc <- fmt.Errorf("containerd events at %s: stream closed", c.address)
					return
				}
				if env == nil || env.Event == nil || !c.Searched(env.Namespace) {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				st, ok := v.(*apievents.TaskStart)
				if !ok {
					continue
				}
				ev := TaskStart{Ref: Ref{Namespace: env.Namespace, ID: st.ContainerID}, PID: st.Pid, Time: env.Timestamp}
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- nil
					return
				}
			}
		}
	}()
	return out, errc
}

func hasUTSNamespace(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UTSNamespace {
			return true
		}
	}
	return false
}
