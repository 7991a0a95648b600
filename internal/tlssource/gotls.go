package tlssource

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/internal/display"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"
)

// Go's crypto/tls is read through uprobes on (*Conn).Read and (*Conn).Write
// of the Go executable itself. Write's plaintext is copied when it starts
// (the receiver and the buffer are in registers): a request is then always
// recorded before its response, which another goroutine may read before
// Write returns. Read's is copied on each of its RET instructions, with
// the count, from the buffer noted when it started. No uretprobe: a
// uretprobe rewrites the return address on the goroutine's stack, and Go
// moves stacks, which then crash. The functions are found in .gopclntab
// (debug/gosym), which stripped binaries keep: the runtime needs it.
//
// "Starts" is the first instruction after the stack check of the
// function's prologue (CMP against g.stackguard, then a conditional jump
// to a call of runtime.morestack that jumps back to the entry): a probe at
// the entry itself fires again each time the stack grows, which would
// copy a Write twice.

// The functions GoTLS locates.
const (
	goRead  = "crypto/tls.(*Conn).Read"
	goWrite = "crypto/tls.(*Conn).Write"
	goClose = "crypto/tls.(*Conn).Close"
)

// goMinMinor is the oldest Go 1.x release whose register ABI and struct
// offsets gotls.c assumes (and that the tests check): Go 1.18.
const goMinMinor = 18

// ErrNotGo says that an executable was not built by the Go toolchain.
var ErrNotGo = errors.New("not a Go executable")

// ErrNoCryptoTLS says that a Go executable does not contain crypto/tls.
var ErrNoCryptoTLS = errors.New("no crypto/tls in the Go executable")

// GoTLS is where the probes go in one Go executable, as file offsets (what
// a uprobe takes).
type GoTLS struct {
	Version  string // the Go release that built it, e.g. go1.26.0
	Read     uint64 // start of (*Conn).Read, past its stack check
	Write    uint64 // start of (*Conn).Write
	Close    uint64 // start of (*Conn).Close; 0 if the linker dropped it
	ReadRets []uint64
}

// UnreadableGoError says why a Go executable with crypto/tls cannot be
// read: the reason fits the "cannot read" line.
type UnreadableGoError struct{ Reason string }

func (e *UnreadableGoError) Error() string { return e.Reason }

// FindGoTLS locates crypto/tls in the Go executable r. It returns ErrNotGo
// for another kind of file, ErrNoCryptoTLS when the program has no TLS
// connection code, and an *UnreadableGoError when it has some that boxtap
// cannot probe (another architecture, a Go release before 1.18).
func FindGoTLS(r io.ReaderAt) (*GoTLS, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, ErrNotGo
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, ErrNotGo
	}
	pcln, err := pclnData(f)
	if err != nil {
		return nil, err
	}
	// Function names are strings in the table in every layout since Go
	// 1.2: the presence test that holds for releases gosym's use below
	// does not cover.
	if !bytes.Contains(pcln, []byte(goRead+"\x00")) {
		return nil, ErrNoCryptoTLS
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, &UnreadableGoError{Reason: fmt.Sprintf("Go crypto/tls on %s; boxtap reads it on amd64 only", f.Machine)}
	}
	if minor, ok := goMinor(bi.GoVersion); !ok || minor < goMinMinor {
		return nil, &UnreadableGoError{Reason: fmt.Sprintf("Go crypto/tls built by %s; boxtap reads Go 1.18 and later", display.Quote(bi.GoVersion))}
	}
	tab, err := goSymTable(f, pcln)
	if err != nil {
		return nil, fmt.Errorf("%s executable: %w", display.Quote(bi.GoVersion), err)
	}
	read, write := tab.LookupFunc(goRead), tab.LookupFunc(goWrite)
	if read == nil || write == nil {
		return nil, ErrNoCryptoTLS
	}
	g := &GoTLS{Version: bi.GoVersion}
	if g.Read, g.ReadRets, err = funcProbes(f, read); err != nil {
		return nil, err
	}
	if g.Write, _, err = funcProbes(f, write); err != nil {
		return nil, err
	}
	if c := tab.LookupFunc(goClose); c != nil {
		if g.Close, _, err = funcProbes(f, c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// goMinor is the minor release of a Go version string such as "go1.26.0"
// or "go1.18rc1".
func goMinor(v string) (int, bool) {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	return n, err == nil
}

// pclnData reads .gopclntab. Without one (a linker that dropped the
// section header) boxtap cannot tell whether the program has crypto/tls:
// ErrNoCryptoTLS, and nothing is reported.
func pclnData(f *elf.File) ([]byte, error) {
	pcln := f.Section(".gopclntab")
	if pcln == nil || pcln.Type == elf.SHT_NOBITS {
		return nil, ErrNoCryptoTLS
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .gopclntab: %w", err)
	}
	return data, nil
}

// goSymTable decodes the function table of .gopclntab (data).
func goSymTable(f *elf.File, data []byte) (*gosym.Table, error) {
	text := f.Section(".text")
	if text == nil {
		return nil, errors.New("no .text section")
	}
	if err := checkPclnHeader(data); err != nil {
		return nil, err
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("decoding .gopclntab: %w", err)
	}
	return tab, nil
}

// checkPclnHeader rejects a Go 1.18+ pclntab (magic 0xfffffff0 or
// 0xfffffff1, little-endian, 8-byte pointers) whose function count does
// not fit in it: debug/gosym would allocate that many entries first.
func checkPclnHeader(data []byte) error {
	if len(data) < 16 {
		return errors.New(".gopclntab too short")
	}
	magic := binary.LittleEndian.Uint32(data)
	if (magic != 0xfffffff0 && magic != 0xfffffff1) || data[7] != 8 {
		return fmt.Errorf(".gopclntab of an unknown layout (magic %#x, pointer size %d)", magic, data[7])
	}
	if nfunc := binary.LittleEndian.Uint64(data[8:]); nfunc > uint64(len(data))/8 {
		return fmt.Errorf(".gopclntab claims %d functions in %d bytes", nfunc, len(data))
	}
	return nil
}

// funcProbes returns the file offsets of fn's start (past its stack
// check) and of each RET instruction in its body.
func funcProbes(f *elf.File, fn *gosym.Func) (start uint64, rets []uint64, err error) {
	entry, err := fileOffset(f, fn.Entry)
	if err != nil {
		return 0, nil, err
	}
	if fn.End <= fn.Entry || fn.End-fn.Entry > 1<<20 {
		return 0, nil, fmt.Errorf("%s: implausible size %d", fn.Name, fn.End-fn.Entry)
	}
	code := make([]byte, fn.End-fn.Entry)
	if _, err := f.Section(".text").ReadAt(code, int64(fn.Entry-f.Section(".text").Addr)); err != nil {
		return 0, nil, fmt.Errorf("%s: reading its code: %w", fn.Name, err)
	}
	offs, err := retOffsets(code)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", fn.Name, err)
	}
	if len(offs) == 0 {
		return 0, nil, fmt.Errorf("%s: no RET instruction", fn.Name)
	}
	for _, o := range offs {
		rets = append(rets, entry+o)
	}
	return entry + pastStackCheck(code), rets, nil
}

// pastStackCheck returns the offset of the first instruction after the
// stack check that opens a Go function (CMP, then a conditional jump,
// within its first three instructions), or 0 when it has none (a function
// marked nosplit).
func pastStackCheck(code []byte) uint64 {
	pc, cmp := 0, false
	for range 3 {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Op == 0 {
			return 0
		}
		pc += inst.Len
		switch inst.Op {
		case x86asm.CMP:
			cmp = true
		case x86asm.JBE, x86asm.JB, x86asm.JA, x86asm.JAE:
			if cmp {
				return uint64(pc)
			}
			return 0
		}
	}
	return 0
}

// retOffsets decodes amd64 code from its start and returns the offsets of
// its RET instructions. Go puts no data in its functions' code, so a
// decoding failure means the bytes are not what we think: an error, rather
// than probes at guessed places (a uprobe mid-instruction corrupts the
// program).
func retOffsets(code []byte) ([]uint64, error) {
	var rets []uint64
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err == nil && inst.Op == 0 {
			// A lone prefix: x86asm's answer to an instruction cut short.
			err = errors.New("truncated instruction")
		}
		if err != nil {
			// The INT3 padding after a function decodes; anything else
			// that does not is a real failure.
			return nil, fmt.Errorf("cannot decode the instruction at +%#x: %w", pc, err)
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, uint64(pc))
		}
		pc += inst.Len
	}
	return rets, nil
}

// fileOffset turns a virtual address of the executable into its offset in
// the file, through the loadable segment that holds it.
func fileOffset(f *elf.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no executable segment", addr)
}

// Unreadable is a traced process whose TLS boxtap cannot read.
type Unreadable struct {
	CgroupID uint64
	PID      int    // host pid
	Comm     string // its command name (/proc/PID/comm)
	Reason   string // what its TLS is, e.g. "rustls"
}

// exeKey names one executable file.
type exeKey struct{ dev, ino uint64 }

// procKey names one process: a reused pid has another start time.
type procKey struct {
	pid   int
	start uint64
}

// OnUnreadable sets the function told, once per process, about each
// traced process with TLS boxtap cannot read. Call it before Add or Watch.
func (s *Source) OnUnreadable(f func(Unreadable)) {
	s.mu.Lock()
	s.onUnreadable = f
	s.mu.Unlock()
}

// scanExe classifies the executable of pid (of cgroupID), whose mappings
// are maps, attaches the OpenSSL probes when OpenSSL is linked into it or
// the Go crypto/tls probes when it is a Go program boxtap reads, and
// reports it when its TLS cannot be read.
func (s *Source) scanExe(pid int, cgroupID uint64, maps []byte) error {
	path := fmt.Sprintf("/proc/%d/exe", pid)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil // the process exited, or is a kernel thread
	}
	start, err := procStart(pid)
	if err != nil {
		return nil // the process exited
	}
	ek := exeKey{dev: st.Dev, ino: st.Ino}
	s.mu.Lock()
	v, ok := s.exes[ek]
	s.mu.Unlock()
	if !ok {
		f, err := os.Open(path)
		if err != nil {
			return nil // the process exited
		}
		v, err = Classify(f, mappedFiles(maps))
		f.Close()
		if err != nil {
			// Not an ELF program we can read (a script's interpreter is
			// the exe, so this is rare): nothing to say about its TLS.
			v = Verdict{}
		}
		s.mu.Lock()
		if len(s.exes) >= maxExeCache {
			clear(s.exes)
		}
		s.exes[ek] = v
		s.mu.Unlock()
	}
	if v.Unreadable != "" {
		s.report(procKey{pid: pid, start: start}, cgroupID, v.Unreadable)
		return nil
	}
	if v.StaticOpenSSL {
		return s.attachFile(pid, cgroupID, path, &st)
	}
	if v.Go == nil {
		return nil
	}
	return s.attachGo(pid, start, cgroupID, path, ek, v.Go)
}

// report tells OnUnreadable's function about a process, once.
func (s *Source) report(k procKey, cgroupID uint64, reason string) {
	s.mu.Lock()
	if s.reported[k] || s.onUnreadable == nil {
		s.mu.Unlock()
		return
	}
	s.reported[k] = true
	f := s.onUnreadable
	s.mu.Unlock()
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", k.pid))
	f(Unreadable{CgroupID: cgroupID, PID: k.pid, Comm: strings.TrimSpace(string(comm)), Reason: reason})
}

// attachGo sets the Go crypto/tls probes in process pid, once per
// (process, executable file).
func (s *Source) attachGo(pid int, start, cgroupID uint64, path string, ek exeKey, g *GoTLS) error {
	k := procFile{pid: pid, dev: ek.dev, ino: ek.ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.haveProbes(k, start) {
		return nil
	}
	links, err := s.coll.AttachGoTLS(path, pid, bpf.GoTLSProbes{
		Read: g.Read, Write: g.Write, Close: g.Close, ReadRets: g.ReadRets,
	})
	if errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrNotExist) {
		return nil // the process exited while being instrumented
	}
	if err != nil {
		return fmt.Errorf("pid %d: Go crypto/tls (%s): %w", pid, g.Version, err)
	}
	s.procs[k] = &probes{links: links, start: start, cgroup: cgroupID}
	return nil
}
