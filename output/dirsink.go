package output

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Modes of what a Dir creates.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// ByNameDir is the subdirectory of a Dir that holds one symlink per
// container name, pointing at the container's file.
const ByNameDir = "by-name"

// fileBufferSize is how many bytes of whole lines a FileSink buffers before
// it writes them out without waiting for Flush.
const fileBufferSize = 64 << 10

// DirOptions configure a Dir.
type DirOptions struct {
	// MaxSize rotates a container's file before a write would make it
	// larger than this many bytes; 0 never rotates. A single line longer
	// than MaxSize still goes into a file of its own.
	MaxSize int64
	// MaxFiles is how many rotated files (ID.json.1 is the newest) are kept
	// per container; 0 keeps none (the old file is deleted on rotation).
	MaxFiles int
	// Redactor redacts events; nil applies the default rules.
	Redactor *Redactor
}

// Dir writes one JSON Lines file per container into a directory: ID.json,
// mode 0600, in a directory of mode 0700, plus a symlink by-name/NAME ->
// ../ID.json. It is safe for concurrent use.
type Dir struct {
	path string
	fd   *os.File // the directory, for *at calls
	opts DirOptions

	mu     sync.Mutex
	files  map[string]*FileSink // open sinks by file key
	links  map[string]string    // by-name links of open sinks: path below by-name -> file key
	closed bool
}

// OpenDir prepares path as an output directory, creating it (mode 0700) if
// needed. It refuses a directory that is world-writable or owned by another
// user, and a symlink owned by another user; a directory of ours that others
// may read is tightened to 0700.
func OpenDir(path string, opts DirOptions) (*Dir, error) {
	if path == "" {
		return nil, errors.New("output directory: empty path; pass --output-dir DIR")
	}
	if opts.MaxSize < 0 || opts.MaxFiles < 0 {
		return nil, fmt.Errorf("output directory %s: --max-size and --max-files must not be negative", path)
	}
	euid := os.Geteuid()
	lst, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("output directory %s: create parent: %w", path, err)
		}
		if err := os.Mkdir(path, dirMode); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("output directory %s: create: %w", path, err)
		}
		lst, err = os.Lstat(path)
	}
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w", path, err)
	}
	if lst.Mode()&os.ModeSymlink != 0 {
		if uid := ownerOf(lst); uid != euid {
			return nil, fmt.Errorf("output directory %s is a symlink owned by uid %d, not by uid %d: refusing it; give the real directory", path, uid, euid)
		}
	}
	fd, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("output directory %s: open: %w", path, err)
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("output directory %s: %w", path, err)
	}
	if !st.IsDir() {
		fd.Close()
		return nil, fmt.Errorf("output directory %s is not a directory", path)
	}
	if uid := ownerOf(st); uid != euid {
		fd.Close()
		return nil, fmt.Errorf("output directory %s is owned by uid %d, not by uid %d: refusing it; use a directory of your own (chown it, or pick another)", path, uid, euid)
	}
	if st.Mode().Perm()&0o002 != 0 {
		fd.Close()
		return nil, fmt.Errorf("output directory %s is world-writable (mode %04o): refusing it; chmod 0700 it or pick another", path, st.Mode().Perm())
	}
	if st.Mode().Perm() != dirMode {
		if err := fd.Chmod(dirMode); err != nil {
			fd.Close()
			return nil, fmt.Errorf("output directory %s: set mode 0700: %w", path, err)
		}
	}
	return newDir(path, fd, opts), nil
}

func newDir(path string, fd *os.File, opts DirOptions) *Dir {
	return &Dir{path: path, fd: fd, opts: opts, files: make(map[string]*FileSink), links: make(map[string]string)}
}

func ownerOf(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// validID matches the container IDs that may name a file: Docker's hex IDs
// and containerd's identifiers. Nothing in it can leave the directory.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckID returns an error unless id can safely name a file in the
// directory (no "/", "..", control characters; at most 128 characters).
func CheckID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("container ID %q cannot name a file: only letters, digits, '.', '_' and '-' (first a letter or digit), at most 128", id)
	}
	return nil
}

// Sink returns the sink of a container without namespace or pod (Docker):
// SinkFor(Owner{ID: id, Name: name}).
func (d *Dir) Sink(id, name string) (*FileSink, error) {
	return d.SinkFor(Owner{ID: id, Name: name})
}

// SinkFor returns the sink of one container, writing KEY.json (see
// FileKey). The file is opened on the first flush (or Open), so an
// unwritable directory or a full disk is reported by Write/Flush (once per
// failure streak), not here. A container with a name gets a by-name link
// when its file is first opened (see link).
func (d *Dir) SinkFor(o Owner) (*FileSink, error) {
	key, err := FileKey(o.Namespace, o.ID)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if _, dup := d.files[key]; dup {
		return nil, fmt.Errorf("output directory %s: %s.json is already open", d.path, key)
	}
	s := &FileSink{d: d, id: o.ID, key: key, owner: o, file: key + ".json"}
	d.files[key] = s
	return s, nil
}

// Reopen closes every open file after flushing it; each is opened again,
// by name, at its next flush. Send SIGHUP after logrotate moved the files.
func (d *Dir) Reopen() error {
	var errs []error
	for _, s := range d.open() {
		if err := s.reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Dir) open() []*FileSink {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Values(d.files))
}

// Close flushes and closes every sink still open, then the directory.
func (d *Dir) Close() error {
	var errs []error
	for _, s := range d.open() {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.Join(errs...)
	}
	d.closed = true
	if err := d.fd.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *Dir) forget(s *FileSink) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files[s.key] == s {
		delete(d.files, s.key)
	}
	if s.linkRel != "" && d.links[s.linkRel] == s.key {
		delete(d.links, s.linkRel)
	}
}

// FileSink is one container's JSON Lines file. Lines are buffered and
// written whole: a failed or short write is cut back, so the file only ever
// holds complete lines. A torn last line left by a crash is removed when the
// file is opened again.
type FileSink struct {
	d     *Dir
	id    string
	key   string // FileKey
	owner Owner
	file  string // KEY.json

	mu       sync.Mutex
	f        *os.File // nil until the next flush opens it
	size     int64
	buf      []byte
	lines    int // lines in buf
	failing  bool
	dropped  uint64
	linked   bool
	linkRel  string // the by-name link this sink holds, below by-name/
	closed   bool
	rotation int
}

// Write encodes e as one line.
func (s *FileSink) Write(e *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.buf = e.AppendJSONWith(s.buf, s.d.opts.Redactor)
	s.buf = append(s.buf, '\n')
	s.lines++
	if len(s.buf) >= fileBufferSize {
		return s.flushLocked()
	}
	return nil
}

// Flush writes the buffered lines.
func (s *FileSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.flushLocked()
}

// Close flushes and closes the file; closing twice is a no-op.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.flushLocked()
	s.closed = true
	if s.f != nil {
		if cerr := s.f.Close(); cerr != nil && err == nil && !s.failing {
			err = fmt.Errorf("output: close %s: %w", s.path(), cerr)
		}
		s.f = nil
	}
	s.d.forget(s)
	return err
}

// Dropped is how many lines were lost to write errors.
func (s *FileSink) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Path is the file's path.
func (s *FileSink) Path() string { return s.path() }

func (s *FileSink) path() string { return filepath.Join(s.d.path, s.file) }

func (s *FileSink) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.flushLocked()
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
	return err
}

// flushLocked writes the buffer, rotating as needed. On failure the
// buffered lines are dropped; the first failure after a success is
// returned, later ones are counted only.
func (s *FileSink) flushLocked() error {
	if len(s.buf) == 0 {
		return nil
	}
	err := s.writeOut()
	if err == nil {
		s.failing = false
		s.buf, s.lines = s.buf[:0], 0
		return nil
	}
	s.dropped += uint64(s.lines)
	s.buf, s.lines = s.buf[:0], 0
	if s.failing {
		return nil
	}
	s.failing = true
	return fmt.Errorf("output: %w (events of this container are dropped until writes succeed again)", err)
}

func (s *FileSink) writeOut() error {
	if s.f == nil {
		if err := s.openFile(); err != nil {
			return err
		}
	}
	rest := s.buf
	for len(rest) > 0 {
		chunk := rest
		if max := s.d.opts.MaxSize; max > 0 && s.size+int64(len(chunk)) > max {
			chunk = wholeLinesWithin(rest, max-s.size)
			if len(chunk) == 0 {
				if s.size > 0 {
					if err := s.rotate(); err != nil {
						return err
					}
					continue
				}
				chunk = rest[:bytes.IndexByte(rest, '\n')+1] // one line longer than --max-size
			}
		}
		if err := s.appendChunk(chunk); err != nil {
			return err
		}
		rest = rest[len(chunk):]
	}
	return nil
}

// wholeLinesWithin returns the longest prefix of buf made of whole lines
// and at most limit bytes long.
func wholeLinesWithin(buf []byte, limit int64) []byte {
	if limit <= 0 {
		return nil
	}
	if int64(len(buf)) <= limit {
		return buf
	}
	i := bytes.LastIndexByte(buf[:limit], '\n')
	return buf[:i+1]
}

// appendChunk writes whole lines; a short write is cut back so the file
// never ends in a partial line.
func (s *FileSink) appendChunk(chunk []byte) error {
	n, err := s.f.Write(chunk)
	if err == nil && n == len(chunk) {
		s.size += int64(n)
		return nil
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	if n > 0 {
		if terr := s.f.Truncate(s.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cut back partial line: %w", terr))
		}
	}
	// Reopen next time: the file may have been replaced or the disk freed.
	_ = s.f.Close()
	s.f = nil
	return fmt.Errorf("write %s: %w", s.path(), err)
}

// Open opens the file now instead of at the first flush, so that a caller
// that must report failures at once (the hook's tracer) learns of them.
func (s *FileSink) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.f != nil {
		return nil
	}
	return s.openFile()
}

// openFile opens (or creates) KEY.json for appending, locks it, and removes
// a torn last line.
func (s *FileSink) openFile() error {
	f, err := s.openLocked(s.file, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", s.path(), err)
	}
	size, err := completeLinesSize(s.d.fd, s.file, st.Size())
	if err != nil {
		f.Close()
		return err
	}
	if size != st.Size() {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return fmt.Errorf("remove torn last line of %s: %w", s.path(), err)
		}
	}
	s.f, s.size = f, size
	if !s.linked {
		s.linked = true
		s.link()
	}
	return nil
}

// openLocked opens name in the directory (never through a symlink), checks
// that it is a regular file of mode 0600, and takes an open-file-description
// write lock on it. The lock says "a running boxtap writes this file": it
// goes with the process, and by-name claimants test it (linkOwned). A file
// locked already is being written by another boxtap process.
func (s *FileSink) openLocked(name string, flags int) (*os.File, error) {
	path := filepath.Join(s.d.path, name)
	fd, err := unix.Openat(int(s.d.fd.Fd()), name, flags, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: not a regular file", path)
	}
	if st.Mode().Perm() != fileMode {
		if err := f.Chmod(fileMode); err != nil {
			f.Close()
			return nil, fmt.Errorf("chmod 0600 %s: %w", path, err)
		}
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%s is being written by another boxtap process (is this container traced twice?)", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// completeLinesSize returns the length of the file's prefix that ends with
// a newline (0 when it has none).
func completeLinesSize(dir *os.File, name string, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	const block = 64 << 10
	buf := make([]byte, block)
	end := size
	for end > 0 {
		start := max(end-block, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read %s: %w", name, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// rotate shifts KEY.json.N-1 -> KEY.json.N ... KEY.json -> KEY.json.1 and
// starts a new file. The new file is created and locked first and swapped
// in atomically (RENAME_EXCHANGE), so KEY.json is never missing or unlocked
// while the container runs and a by-name claimant never mistakes it for a
// stopped one; file systems without the exchange get two renames.
func (s *FileSink) rotate() error {
	dirfd := int(s.d.fd.Fd())
	tmp := "." + s.file + ".new"
	_ = unix.Unlinkat(dirfd, tmp, 0) // left by a crash
	next, err := s.openLocked(tmp, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", s.path(), err)
	}
	keep := s.d.opts.MaxFiles
	if keep > 0 {
		_ = unix.Unlinkat(dirfd, s.file+"."+strconv.Itoa(keep), 0)
		for i := keep - 1; i >= 1; i-- {
			from, to := s.file+"."+strconv.Itoa(i), s.file+"."+strconv.Itoa(i+1)
			if err := unix.Renameat(dirfd, from, dirfd, to); err != nil && !errors.Is(err, unix.ENOENT) {
				next.Close()
				return fmt.Errorf("rotate %s: %w", s.path(), err)
			}
		}
	}
	old := tmp // where the current file ends up after the exchange
	if err := unix.Renameat2(dirfd, tmp, dirfd, s.file, unix.RENAME_EXCHANGE); err != nil {
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.ENOENT) {
			next.Close()
			return fmt.Errorf("rotate %s: %w", s.path(), err)
		}
		old = s.file + ".old"
		if err := unix.Renameat(dirfd, s.file, dirfd, old); err != nil && !errors.Is(err, unix.ENOENT) {
			next.Close()
			return fmt.Errorf("rotate %s: %w", s.path(), err)
		}
		if err := unix.Renameat(dirfd, tmp, dirfd, s.file); err != nil {
			next.Close()
			return fmt.Errorf("rotate %s: %w", s.path(), err)
		}
	}
	if keep == 0 {
		err = unix.Unlinkat(dirfd, old, 0)
	} else {
		err = unix.Renameat(dirfd, old, dirfd, s.file+".1")
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		next.Close()
		return fmt.Errorf("rotate %s: %w", s.path(), err)
	}
	_ = s.f.Close()
	s.f, s.size = next, 0
	s.rotation++
	return nil
}

// link points the container's by-name link (see linkElems) at its file.
// A link held by a running container is never replaced: the newcomer gets
// NAME~KEY.json beside it instead. A link is held while this Dir has the
// owner's sink open, or while any process holds the lock on the file it
// points at (openLocked); a link to a stopped container's file is taken
// over. Best effort: a convenience for people, never needed by boxtap.
func (s *FileSink) link() {
	elems := linkElems(s.owner)
	if elems == nil {
		return
	}
	sub, err := s.d.openLinkDir(elems[:len(elems)-1])
	if err != nil {
		return
	}
	defer unix.Close(sub)
	// Claims of one link directory take turns, across processes too, so
	// that two containers starting at once cannot both find a link free.
	// Held only for the few calls below; released with the descriptor.
	if err := unix.Flock(sub, unix.LOCK_EX); err != nil {
		return
	}
	name := elems[len(elems)-1]
	dirRel := strings.Join(elems[:len(elems)-1], "/")
	rel := path.Join(dirRel, name)
	target := strings.Repeat("../", len(elems)) + s.file
	if s.d.linkOwned(sub, rel, name, s.key, len(elems)) {
		name = strings.TrimSuffix(name, ".json") + "~" + s.key + ".json"
		rel = path.Join(dirRel, name)
	}
	tmp := ".tmp-" + s.key
	_ = unix.Unlinkat(sub, tmp, 0)
	if err := unix.Symlinkat(target, sub, tmp); err != nil {
		return
	}
	if err := unix.Renameat(sub, tmp, sub, name); err != nil {
		_ = unix.Unlinkat(sub, tmp, 0)
		return
	}
	s.linkRel = rel
	s.d.mu.Lock()
	s.d.links[rel] = s.key
	s.d.mu.Unlock()
}

// openLinkDir opens (creating, 0700) by-name/ and the directories below it,
// never following a symlink.
func (d *Dir) openLinkDir(dirs []string) (int, error) {
	fd := int(d.fd.Fd())
	owned := -1
	for _, name := range append([]string{ByNameDir}, dirs...) {
		if err := unix.Mkdirat(fd, name, dirMode); err != nil && !errors.Is(err, unix.EEXIST) {
			if owned >= 0 {
				unix.Close(owned)
			}
			return -1, err
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if owned >= 0 {
			unix.Close(owned)
		}
		if err != nil {
			return -1, err // not a directory of ours
		}
		fd, owned = next, next
	}
	return owned, nil
}

// linkOwned reports whether the link name in dir sub (rel below by-name/,
// depth elements deep) belongs to a running container other than key: one
// whose sink this Dir has open, or whose file another process holds locked.
// Anything there that is not one of our links (a file, a foreign target)
// counts as owned too: it is left alone.
func (d *Dir) linkOwned(sub int, rel, name, key string, depth int) bool {
	d.mu.Lock()
	holder, held := d.links[rel]
	d.mu.Unlock()
	if held {
		return holder != key
	}
	buf := make([]byte, 512)
	n, err := unix.Readlinkat(sub, name, buf)
	if errors.Is(err, unix.ENOENT) {
		return false
	}
	if err != nil {
		return true // not a symlink: not ours to replace
	}
	file, ok := strings.CutPrefix(string(buf[:n]), strings.Repeat("../", depth))
	if !ok || file == "" || strings.Contains(file, "/") || !strings.HasSuffix(file, ".json") {
		return true
	}
	if file == key+".json" {
		return false
	}
	fd, err := unix.Openat(int(d.fd.Fd()), file, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false // the file is gone: a stale link
	}
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return true
	}
	return lk.Type != unix.F_UNLCK
}

var _ Sink = (*FileSink)(nil)
