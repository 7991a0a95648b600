package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// TestWatchSeparatesContainersIntoFiles starts watch first, then one Docker
// and one containerd-only container: each gets its own file holding only
// its own events. The containerd container then exits while watched: its
// file is complete and closed, and nothing stays attached to its cgroup.
func TestWatchSeparatesContainersIntoFiles(t *testing.T) {
	e := newWatchEnv(t, "")
	d := itest.RequireDocker(t)
	ns := e.namespace(t)
	mark := ctrtest.RandomID("sel")
	dir := filepath.Join(t.TempDir(), "out")
	p := e.startBoxtap(t, "watch", "--debug", "--label", "boxtap-watch="+mark, "--output-dir", dir)
	if err := p.WaitStderr("debug: connected to containerd", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitStderr("debug: connected to Docker", traceStartTimeout); err != nil {
		t.Fatal(err)
	}

	dport, cport := itest.FreePort(t), itest.FreePort(t)
	dc := d.Run(t, itest.RunOpts{Flags: []string{"--label", "boxtap-watch=" + mark}, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", dport)}})
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: map[string]string{"boxtap-watch": mark}, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", cport)}})
	// A container without the label is not traced.
	other := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Args: []string{"sleep"}})

	for _, want := range []string{fmt.Sprintf("tracing %s (%s)\n", dc.Name, itest.ShortID(dc.ID)), fmt.Sprintf("tracing %s (%s)\n", tk.ID, itest.ShortID(tk.ID))} {
		if err := p.WaitStderr(want, traceStartTimeout); err != nil {
			t.Fatal(err)
		}
	}
	// Docker's container is also a task in containerd's moby namespace: it
	// must be traced once, under its Docker name.
	if n := strings.Count(p.Stderr(), "("+itest.ShortID(dc.ID)+")\n"); n != 1 {
		t.Errorf("Docker container attached %d times:\n%s", n, p.Stderr())
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/docker", dport), 2)
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/ctrd", cport), 3)
	dockerFile, ctrdFile := filepath.Join(dir, dc.ID+".json"), filepath.Join(dir, ns+"@"+tk.ID+".json")
	waitFileEvents(t, dockerFile, 2, 30*time.Second)
	waitFileEvents(t, ctrdFile, 3, 30*time.Second)

	// The containerd container exits while watched.
	cgroupDir := e.cgroupOfPID(t, tk.PID)
	tk.Kill(t, syscall.SIGTERM)
	if err := p.WaitStderr(fmt.Sprintf("container %s (%s) stopped: 3 events", tk.ID, itest.ShortID(tk.ID)), traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	checkDetached(t, cgroupDir)
	if open := openFilesOf(p.PID(), dir); slices.Contains(open, ctrdFile) {
		t.Errorf("watch still holds %s open after the container stopped", ctrdFile)
	}
	if evs := fileEvents(t, ctrdFile); len(evs) != 3 {
		t.Errorf("stopped container's file holds %d events, want 3", len(evs))
	}
	if !slices.Contains(openFilesOf(p.PID(), dir), dockerFile) {
		t.Errorf("the running container's file is not open")
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("watch exit: %v\n%s", err, p.Stderr())
	}
	checkDetached(t, e.cgroupOfPID(t, uint32(dc.PID())))

	for file, want := range map[string]struct {
		id, name, path string
		n              int
	}{
		dockerFile: {dc.ID, dc.Name, "/docker", 2},
		ctrdFile:   {tk.ID, tk.ID, "/ctrd", 3},
	} {
		evs := fileEvents(t, file)
		if len(evs) != want.n {
			t.Errorf("%s: %d events, want %d", file, len(evs), want.n)
		}
		for _, ev := range evs {
			if ev.Container.ID != want.id || ev.Container.Name != want.name {
				t.Errorf("%s holds an event of container %+v", file, ev.Container)
			}
		}
		st, err := os.Stat(file)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", file, st.Mode(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ns+"@"+other.ID+".json")); !os.IsNotExist(err) {
		t.Errorf("unselected container got a file: %v", err)
	}
	if strings.Contains(p.Stderr(), itest.ShortID(other.ID)) && !strings.Contains(p.Stderr(), "skipping "+other.ID) {
		t.Errorf("unselected container was traced:\n%s", p.Stderr())
	}
	if _, err := os.Lstat(filepath.Join(dir, "by-name", dc.Name+".json")); err != nil {
		t.Errorf("no by-name link for %s: %v", dc.Name, err)
	}
}

// TestWatchRotatesAndReopensOnSIGHUP: --max-size/--max-files rotation keeps
// whole lines, and SIGHUP after a logrotate-style move starts a new file.
func TestWatchRotatesAndReopensOnSIGHUP(t *testing.T) {
	e := newWatchEnv(t, "")
	ns := e.namespace(t)
	dir := filepath.Join(t.TempDir(), "out")
	p := e.startBoxtap(t, "watch", "--runtime", "containerd", "--namespace", ns, "--output-dir", dir, "--max-size", "4K", "--max-files", "2")
	port := itest.FreePort(t)
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := p.WaitStderr("tracing "+tk.ID, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	file := filepath.Join(dir, ns+"@"+tk.ID+".json")
	getN(t, url, 12) // ~1 KiB per event: several rotations
	// Events are written in order: once the last request's event is in a file, every
	// earlier one was written before it.
	getN(t, url+"last", 1)
	files := []string{file + ".2", file + ".1", file}
	holdsLast := func() bool {
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && bytes.Contains(data, []byte(`"uri_path":"/last?i=`)) {
				return true
			}
		}
		return false
	}
	if !hxWaitUntil(30*time.Second, holdsLast) {
		t.Fatalf("the last request's event is in none of %v; stderr:\n%s", files, p.Stderr())
	}
	for _, f := range files[:2] {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("no rotated file after 13 events of ~1 KiB with --max-size 4K: %v", err)
		}
	}
	if _, err := os.Stat(file + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists with --max-files 2", file)
	}
	for _, f := range []string{file + ".2", file + ".1", file} {
		if st, err := os.Stat(f); err == nil && st.Size() > 4096 {
			t.Errorf("%s: %d bytes, over --max-size 4K", f, st.Size())
		}
		fileEvents(t, f) // whole, valid lines only
	}

	// logrotate: move the file away, then SIGHUP.
	moved := file + ".moved"
	if err := os.Rename(file, moved); err != nil {
		t.Fatal(err)
	}
	before := len(fileEvents(t, moved))
	// boxtap keeps the file open between flushes; SIGHUP makes it close the file, and the
	// next flush opens the name anew.
	if !slices.Contains(openFilesOf(p.PID(), dir), moved) {
		t.Fatalf("boxtap does not hold %s open before SIGHUP (holds %v): the reopen would prove nothing", moved, openFilesOf(p.PID(), dir))
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !hxWaitUntil(30*time.Second, func() bool { return !slices.Contains(openFilesOf(p.PID(), dir), moved) }) {
		t.Fatalf("boxtap still holds %s open after SIGHUP", moved)
	}
	getN(t, url, 1)
	evs := waitFileEvents(t, file, 1, 30*time.Second)
	if len(evs) != 1 || evs[0].Container.ID != tk.ID {
		t.Fatalf("new file after SIGHUP holds %d events", len(evs))
	}
	if after := len(fileEvents(t, moved)); after != before {
		t.Errorf("moved file grew from %d to %d events after SIGHUP", before, after)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("watch exit: %v", err)
	}
}

// TestWatchBadNamesAndReadOnlyDir: a container name from the runtime that
// tries to leave the directory stays inside it; a read-only output directory
// is reported once per container and tracing goes on.
func TestWatchBadNamesAndReadOnlyDir(t *testing.T) {
	e := newWatchEnv(t, "")
	ns := e.namespace(t)

	dir := filepath.Join(t.TempDir(), "out")
	p := e.startBoxtap(t, "watch", "--runtime", "containerd", "--namespace", ns, "--output-dir", dir)
	port := itest.FreePort(t)
	evil := "../../escape\x1b[31m/\x00x"
	tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Labels: map[string]string{container.LabelContainerName: evil}, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := p.WaitStderr(itest.ShortID(tk.ID)+")", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 1)
	waitFileEvents(t, filepath.Join(dir, ns+"@"+tk.ID+".json"), 1, 30*time.Second)
	p.Signal(syscall.SIGTERM)
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.EvalSymlinks(dir)
	err := filepath.Walk(filepath.Dir(dir), func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode()&os.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(path)
			if err != nil {
				return fmt.Errorf("dangling link %s: %w", path, err)
			}
			if filepath.Dir(target) != root {
				t.Errorf("link %s resolves outside %s: %s", path, root, target)
			}
		}
		if info.Mode().IsRegular() && filepath.Dir(path) != root {
			t.Errorf("file %s outside the output directory", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if links, _ := os.ReadDir(filepath.Join(dir, "by-name")); len(links) != 1 {
		t.Errorf("by-name holds %d links, want 1 for the container", len(links))
	}
	if strings.Contains(p.Stderr(), "\x1b[31m") {
		t.Errorf("a control character from a container name reached the terminal:\n%q", p.Stderr())
	}

	// Read-only directory: each container's failure is reported once.
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o700)
	if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY, "size=64k,mode=0700"); err != nil {
		t.Fatalf("mount read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(ro, unix.MNT_DETACH) })
	p = e.startBoxtap(t, "watch", "--runtime", "containerd", "--namespace", ns, "--output-dir", ro)
	ports := []int{port, itest.FreePort(t)}
	tk2 := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", ports[1])}})
	for _, id := range []string{tk.ID, tk2.ID} {
		if err := p.WaitStderr(itest.ShortID(id)+")\n", traceStartTimeout); err != nil {
			t.Fatal(err)
		}
	}
	// A first round fails and is reported; the later rounds are flushed after that report,
	// so a repeated report of the same failure would show.
	const rounds, perRound = 3, 2
	for round := range rounds {
		for _, port := range ports {
			getN(t, fmt.Sprintf("http://127.0.0.1:%d/r%d", port, round), perRound)
		}
		if round > 0 {
			continue
		}
		for _, id := range []string{tk.ID, tk2.ID} {
			if err := p.WaitStderr(itest.ShortID(id)+"): output: open", traceStartTimeout); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait(traceExitTimeout)
	stderr := p.Stderr()
	// Every event was handled (and failed to be written) before the exit line.
	want := rounds * perRound * len(ports)
	if m := regexp.MustCompile(`boxtap: (\d+) events \((\d+) of them not written: output errors\), `).FindStringSubmatch(stderr); m == nil || m[1] != strconv.Itoa(want) || m[2] != strconv.Itoa(want) {
		t.Errorf("the exit line must count %d events, all of them not written:\n%s", want, stderr)
	}
	for _, id := range []string{tk.ID, tk2.ID} {
		re := regexp.MustCompile(regexp.QuoteMeta(itest.ShortID(id)) + `\): output: open [^\n]*read-only file system`)
		if n := len(re.FindAllString(stderr, -1)); n != 1 {
			t.Errorf("container %s: %d write error reports, want 1:\n%s", itest.ShortID(id), n, stderr)
		}
	}
}
