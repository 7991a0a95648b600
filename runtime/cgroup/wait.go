package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollInterval is how often WaitEmpty re-reads cgroup.events even when
// inotify reports nothing, as a safety net (and the only mechanism when
// inotify is unavailable).
const pollInterval = 2 * time.Second

// WaitEmpty blocks until the cgroup directory dir holds no more processes
// ("populated 0" in cgroup.events) or has been removed, and then returns nil.
// It returns ctx.Err() when ctx is cancelled first. It watches cgroup.events
// with inotify (the kernel signals every change of "populated" as a modify
// event) and re-reads the file every few seconds in case a notification is
// missed or inotify cannot be used.
func WaitEmpty(ctx context.Context, dir string) error {
	events := filepath.Join(dir, "cgroup.events")

	// Without inotify (limits reached, or the directory is already gone)
	// WaitEmpty falls back to polling alone.
	watch, _ := newEventsWatch(dir, events)
	if watch != nil {
		defer watch.Close()
		stop := context.AfterFunc(ctx, watch.wake)
		defer stop()
	}

	seen := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done, err := emptyOrGone(dir, events, seen)
		if err != nil {
			return err
		}
		seen = true
		if done {
			return nil
		}
		if watch == nil {
			t := time.NewTimer(pollInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		if err := watch.wait(ctx, pollInterval); err != nil {
			return fmt.Errorf("wait for cgroup %s to empty: %w", dir, err)
		}
	}
}

// emptyOrGone reports whether the cgroup has no processes left or no longer
// exists. seen says whether cgroup.events was read before: if it vanishes
// after that, the directory is being removed.
func emptyOrGone(dir, events string, seen bool) (bool, error) {
	data, err := os.ReadFile(events)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
			if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
				return true, nil
			}
			if seen || errors.Is(err, syscall.ENODEV) {
				return true, nil // removed while we watched or read it
			}
			return false, fmt.Errorf("%s is not a cgroup v2 directory (no cgroup.events): %w", dir, err)
		}
		return false, fmt.Errorf("read %s: %w", events, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		if ok && string(key) == "populated" {
			return string(bytes.TrimSpace(val)) == "0", nil
		}
	}
	return false, fmt.Errorf("%s has no \"populated\" line; is %s a cgroup v2 directory?", events, dir)
}

// eventsWatch is an inotify instance watching a cgroup directory and its
// cgroup.events file, read through the Go runtime poller so that reads can
// time out and be woken.
type eventsWatch struct {
	f *os.File
}

func newEventsWatch(dir, events string) (*eventsWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY|unix.IN_DELETE_SELF); err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify watch %s: %w", events, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_ONLYDIR); err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	return &eventsWatch{f: f}, nil
}

// wait returns after an inotify event, after timeout, after wake, or at once
// if ctx is already done.
// The events themselves are discarded: the caller re-reads cgroup.events.
func (w *eventsWatch) wait(ctx context.Context, timeout time.Duration) error {
	if err := w.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("inotify deadline: %w", err)
	}
	if ctx.Err() != nil {
		return nil // cancelled before the deadline was set; wake may have been overwritten
	}
	buf := make([]byte, 4096)
	_, err := w.f.Read(buf)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("read inotify events: %w", err)
	}
	return nil
}

// wake makes a pending or future wait return immediately.
func (w *eventsWatch) wake() { _ = w.f.SetReadDeadline(time.Now()) }

func (w *eventsWatch) Close() error { return w.f.Close() }
