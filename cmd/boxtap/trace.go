package main

import (
	"context"
	"fmt"
	"os"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/httpstream"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/docker"
)

type traceCmd struct {
	Containers []string `arg:"" name:"container" help:"Docker container names, full IDs or unique ID prefixes."`
	DockerHost string   `name:"docker-host" help:"Docker daemon address (default: $DOCKER_HOST or unix:///var/run/docker.sock)." placeholder:"URL"`
	captureFlags
}

func (traceCmd) Help() string {
	return `Examples:
  boxtap trace web                     every response of container "web", one JSON line each
  boxtap trace web api --count 100     two containers; exit after 100 events
  boxtap trace 3f2a --duration 30s     by unique ID prefix, for 30 seconds
  boxtap trace web --pretty            indented, for reading
  boxtap trace web | jq 'select(.args[1].value.status_code >= 500)'

One line on stderr says "tracing <name> (<id>)" once a container's programs
are attached. boxtap exits when every traced container has stopped, on
SIGINT/SIGTERM, or after --count/--duration, and then prints its counts.`
}

func (c *traceCmd) Run(ctx context.Context) error {
	if err := bpf.CheckSystem(); err != nil {
		return err
	}
	cli, err := docker.New(ctx, c.DockerHost)
	if err != nil {
		return err
	}
	defer cli.Close()
	infos := make([]container.Info, 0, len(c.Containers))
	seen := map[string]bool{}
	for _, q := range c.Containers {
		info, err := cli.Resolve(ctx, q)
		if err != nil {
			return err
		}
		if !seen[info.ID] {
			seen[info.ID] = true
			infos = append(infos, info)
		}
	}
	s, err := startSession(ctx, &c.captureFlags, bpf.Options{})
	if err != nil {
		return err
	}
	red := newRedactor(&c.captureFlags, os.Stderr)
	sink := newSink(&c.captureFlags, os.Stdout, red)
	for _, info := range infos {
		if err := s.add(info, sharedSink{sink}); err != nil {
			s.abort()
			return err
		}
	}
	err = s.run()
	if ferr := sink.Close(); ferr != nil && err == nil {
		err = fmt.Errorf("writing events: %w", ferr)
	}
	return err
}

func httpLimits(f *captureFlags) httpstream.Limits {
	return httpstream.Limits{MaxHeaderBytes: f.MaxHeader}
}
