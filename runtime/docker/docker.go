// Package docker finds containers through the Docker Engine API and
// describes them as container.Info. It works with any daemon that speaks API
// 1.24 or later by negotiating the API version (Debian 12's Docker 20.10
// speaks 1.41).
package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	containertypes "github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/runtime/container"
)

// RuntimeName is the container.Info.Runtime value for Docker containers.
const RuntimeName = "docker"

// pingTimeout bounds the reachability check in New.
const pingTimeout = 5 * time.Second

// Client looks up containers in one Docker daemon.
type Client struct {
	api              *client.Client
	host             string
	serverAPIVersion string
}

// New connects to the Docker daemon at host ("unix:///var/run/docker.sock",
// "tcp://...", ...); an empty host means DOCKER_HOST or the platform default.
// The other DOCKER_* variables (TLS, API version) apply as for the docker CLI.
// New pings the daemon and negotiates the API version, so an unreachable
// daemon is reported here, in one line.
func New(ctx context.Context, host string) (*Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	api, err := client.NewClientWithOpts(opts...)
	if err != nil {
		shown := host
		if shown == "" {
			shown = "DOCKER_HOST"
		}
		return nil, fmt.Errorf("invalid Docker host %s: %s; pass --docker-host like unix:///var/run/docker.sock", shown, oneLine(err))
	}
	c := &Client{api: api, host: api.DaemonHost()}

	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	ping, err := api.Ping(pingCtx)
	if err != nil {
		_ = api.Close()
		return nil, fmt.Errorf("cannot reach Docker at %s: %s; start dockerd or pass --docker-host", c.host, oneLine(reachCause(pingCtx, c.host, err)))
	}
	api.NegotiateAPIVersionPing(ping)
	c.serverAPIVersion = ping.APIVersion
	return c, nil
}

// reachCause finds a more precise reason than the client library's generic
// "Cannot connect to the Docker daemon" for a unix socket that cannot be
// dialled (missing file, permission denied, connection refused).
func reachCause(ctx context.Context, host string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s", pingTimeout)
	}
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return err
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, "unix", path)
	if dialErr != nil {
		return dialErr
	}
	_ = conn.Close()
	return err
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.api.Close() }

// APIVersion is the Engine API version the client uses after negotiation,
// e.g. "1.41" against Docker 20.10.
func (c *Client) APIVersion() string { return c.api.ClientVersion() }

// ServerAPIVersion is the newest API version the daemon reported in its ping.
func (c *Client) ServerAPIVersion() string { return c.serverAPIVersion }

// Host is the daemon address in use, e.g. "unix:///var/run/docker.sock".
func (c *Client) Host() string { return c.host }

// List returns the running containers, with their init PIDs.
func (c *Client) List(ctx context.Context) ([]container.Info, error) {
	summaries, err := c.api.ContainerList(ctx, containertypes.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Docker containers at %s: %w", c.host, err)
	}
	infos := make([]container.Info, 0, len(summaries))
	for _, s := range summaries {
		info, err := c.inspect(ctx, s.ID)
		if err != nil {
			var gone *notRunningError
			if errors.As(err, &gone) || isNotFound(err) {
				continue // exited or removed since the listing
			}
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Resolve finds the running container that query designates: its name, full
// ID, or a unique ID prefix (see container.Match). Unknown and ambiguous
// queries give container.NotFoundError and container.AmbiguousError; a
// container that exists but is not running gives an error saying so.
func (c *Client) Resolve(ctx context.Context, query string) (container.Info, error) {
	running, err := c.api.ContainerList(ctx, containertypes.ListOptions{})
	if err != nil {
		return container.Info{}, fmt.Errorf("list Docker containers at %s: %w", c.host, err)
	}
	match, err := container.Match(query, summariesToCandidates(running))
	if err != nil {
		var nf *container.NotFoundError
		if errors.As(err, &nf) {
			if stopped := c.findStopped(ctx, query); stopped != nil {
				return container.Info{}, stopped
			}
		}
		return container.Info{}, err
	}
	return c.inspect(ctx, match.ID)
}

// findStopped looks for query among all containers, to tell "not running"
// apart from "no such container". It returns nil if no single container
// matches (or the listing fails: the caller's not-found error stands).
func (c *Client) findStopped(ctx context.Context, query string) *notRunningError {
	all, err := c.api.ContainerList(ctx, containertypes.ListOptions{All: true})
	if err != nil {
		return nil
	}
	byID := make(map[string]containertypes.Summary, len(all))
	for _, s := range all {
		byID[s.ID] = s
	}
	m, err := container.Match(query, summariesToCandidates(all))
	if err != nil {
		return nil
	}
	return &notRunningError{name: m.Name, id: m.ShortID(), state: string(byID[m.ID].State)}
}

func summariesToCandidates(summaries []containertypes.Summary) []container.Info {
	out := make([]container.Info, 0, len(summaries))
	for _, s := range summaries {
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		out = append(out, container.Info{ID: s.ID, Name: name, Runtime: RuntimeName})
	}
	return out
}

// notRunningError reports a container that exists but has no running process.
type notRunningError struct {
	name, id, state string
}

func (e *notRunningError) Error() string {
	state := e.state
	if state == "" {
		state = "not running"
	}
	name := display.Quote(e.name)
	return fmt.Sprintf("container %s (%s) is not running (state %s): start it first, e.g. `docker start %s`", name, e.id, display.Quote(state), name)
}

func isNotFound(err error) bool {
	return client.IsErrNotFound(err) //nolint:staticcheck // cerrdefs is not a direct dependency
}

// inspect fetches one container and converts it to container.Info.
func (c *Client) inspect(ctx context.Context, id string) (container.Info, error) {
	resp, err := c.api.ContainerInspect(ctx, id)
	if err != nil {
		return container.Info{}, fmt.Errorf("inspect Docker container %s: %w", id, err)
	}
	if resp.ContainerJSONBase == nil || resp.Config == nil {
		return container.Info{}, fmt.Errorf("inspect Docker container %s: daemon returned an incomplete answer", id)
	}
	info := container.Info{
		ID:          resp.ID,
		Name:        strings.TrimPrefix(resp.Name, "/"),
		Image:       resp.Config.Image,
		ImageDigest: resp.Image,
		Runtime:     RuntimeName,
		Labels:      resp.Config.Labels,
		Hostname:    resp.Config.Hostname,
		Pod:         container.PodFromLabels(resp.Config.Labels),
	}
	if resp.State == nil || !resp.State.Running || resp.State.Pid <= 0 {
		state := ""
		if resp.State != nil {
			state = string(resp.State.Status)
		}
		return container.Info{}, &notRunningError{name: info.Name, id: info.ShortID(), state: state}
	}
	info.PID = resp.State.Pid
	if digest := c.repoDigest(ctx, resp.Image, resp.Config.Image); digest != "" {
		info.ImageDigest = digest
	}
	return info, nil
}

// repoDigest returns the registry digest ("repo@sha256:...") of the image,
// preferring the one for the repository the container was created from, or
// "" if the image has none (built or imported locally) or cannot be
// inspected.
func (c *Client) repoDigest(ctx context.Context, imageID, ref string) string {
	if imageID == "" {
		return ""
	}
	img, err := c.api.ImageInspect(ctx, imageID)
	if err != nil || len(img.RepoDigests) == 0 {
		return ""
	}
	repo := repository(ref)
	for _, d := range img.RepoDigests {
		if r, _, ok := strings.Cut(d, "@"); ok && r == repo {
			return d
		}
	}
	return img.RepoDigests[0]
}

// repository strips the tag or digest from an image reference:
// "nginx:1.27" -> "nginx", "reg:5000/a/b@sha256:.." -> "reg:5000/a/b".
func repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		ref = ref[:colon]
	}
	return ref
}
