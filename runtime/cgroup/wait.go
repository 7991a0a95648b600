package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/boxtap/boxtap/internal/display"
	"io"
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
//
// The directory is opened once and cgroup.events is always read through that
// handle, so a cgroup recreated at the same path (docker restart) counts as
// the old one being gone, not as the old one still running.
func WaitEmpty(ctx context.Context, dir string) error {
	return WaitEmptyID(ctx, dir, 0)
}

// WaitEmptyID is WaitEmpty for the cgroup whose id (see ID) is id: when the
// directory at dir is already another cgroup, the one with that id is gone.
// An id of 0 accepts whatever cgroup dir is.
func WaitEmptyID(ctx context.Context, dir string, id uint64) error {
	events := filepath.Join(dir, "cgroup.events")
	d, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open cgroup %s: %w", display.Quote(dir), err)
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return fmt.Errorf("stat cgroup %s: %w", display.Quote(dir), err)
	}
	if id != 0 && st.Ino != id {
		return nil // recreated at the same path: ours is gone
	}

	// Without inotify (limits reached, or the directory is already gone)
	// WaitEmpty falls back to polling alone.
	watch, _ := newEventsWatch(dir, events)
	if watch != nil {
		defer watch.Close()
		stop := context.AfterFunc(ctx, watch.wake)
		defer stop()
	}

	for seen := false; ; seen = true {
		if err := ctx.Err(); err != nil {
			return err
		}
		done, err := emptyOrGone(d, dir, seen)
		if err != nil {
			return err
		}
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
			return fmt.Errorf("wait for cgroup %s to empty: %w", display.Quote(dir), err)
		}
	}
}

// emptyOrGone reports whether the cgroup open as d has no processes left or
// no longer exists. seen says whether its cgroup.events was read before.
func emptyOrGone(d *os.File, dir string, seen bool) (bool, error) {
	data, err := readAt(d, "cgroup.events")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
			// d stays the directory that was opened. If it is a cgroup
			// v2 directory, or had cgroup.events before, it was removed.
			var fs unix.Statfs_t
			if seen || (unix.Fstatfs(int(d.Fd()), &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC) {
				return true, nil
			}
			return false, fmt.Errorf("%s is not a cgroup v2 directory (no cgroup.events)", display.Quote(dir))
		}
		return false, fmt.Errorf("read %s: %w", display.Quote(dir+"/cgroup.events"), err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		if ok && string(key) == "populated" {
			return string(bytes.TrimSpace(val)) == "0", nil
		}
	}
	return false, fmt.Errorf("%s has no \"populated\" line; is it a cgroup v2 directory?", display.Quote(dir+"/cgroup.events"))
}

// readAt reads the file name in the directory open as d.
func readAt(d *os.File, name string) ([]byte, error) {
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(f)
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
		return nil, fmt.Errorf("inotify watch %s: %w", display.Quote(events), err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_ONLYDIR); err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify watch %s: %w", display.Quote(dir), err)
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
