package tlssource

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// OpenSSL linked statically (or BoringSSL, which keeps the same names):
// the SSL_* functions are in the process's own executable, found by their
// symbols (the symbol table, or the dynamic one of an executable that
// exports them). The same programs attach to them as to libssl.so. An
// executable whose symbols were stripped cannot be instrumented.

// maxExeCache bounds how many executables' verdicts are remembered.
const maxExeCache = 4096

// maxSymtabBytes bounds the symbol table read from one executable (the
// tracer's memory is budgeted); a larger one is not searched.
const maxSymtabBytes = 16 << 20

// exeCache remembers, per executable file, whether it defines SSL_read
// and SSL_write: a process's executable is looked at on every notice, and
// reading its symbols costs milliseconds.
type exeCache struct {
	mu      sync.Mutex
	verdict map[[2]uint64]bool
}

func (c *exeCache) get(k [2]uint64) (v, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok = c.verdict[k]
	return v, ok
}

func (c *exeCache) put(k [2]uint64, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verdict == nil || len(c.verdict) >= maxExeCache {
		c.verdict = make(map[[2]uint64]bool)
	}
	c.verdict[k] = v
}

// scanStaticOpenSSL instruments process pid's executable when OpenSSL is
// linked into it. A process that exited meanwhile is no error.
func (s *Source) scanStaticOpenSSL(pid int, cgroupID uint64) error {
	path := fmt.Sprintf("/proc/%d/exe", pid)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil // exited, or a kernel thread
		}
		return fmt.Errorf("pid %d: its executable: %w", pid, err)
	}
	k := [2]uint64{st.Dev, st.Ino}
	has, ok := s.staticSSL.get(k)
	if !ok {
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("pid %d: its executable: %w", pid, err)
		}
		has = DefinesOpenSSL(f)
		f.Close()
		s.staticSSL.put(k, has)
	}
	if !has {
		return nil
	}
	return s.attachFile(pid, cgroupID, path, &st)
}

// DefinesOpenSSL reports whether the ELF file f defines (not merely
// imports) both SSL_read and SSL_write. Anything that is not a readable
// ELF file defines nothing.
func DefinesOpenSSL(f interface {
	ReadAt([]byte, int64) (int, error)
}) bool {
	ef, err := elf.NewFile(f)
	if err != nil {
		return false
	}
	defer ef.Close()
	for _, sec := range ef.Sections {
		if (sec.Type == elf.SHT_SYMTAB || sec.Type == elf.SHT_DYNSYM || sec.Type == elf.SHT_STRTAB) && sec.Size > maxSymtabBytes {
			return false
		}
	}
	found := map[string]bool{}
	for _, syms := range [][]elf.Symbol{symbols(ef.Symbols), symbols(ef.DynamicSymbols)} {
		for _, sym := range syms {
			if (sym.Name == "SSL_read" || sym.Name == "SSL_write") && sym.Section != elf.SHN_UNDEF && sym.Value != 0 &&
				elf.ST_TYPE(sym.Info) == elf.STT_FUNC {
				found[sym.Name] = true
			}
		}
	}
	return found["SSL_read"] && found["SSL_write"]
}

// symbols calls one of elf.File's symbol readers, a missing table being
// an empty one.
func symbols(read func() ([]elf.Symbol, error)) []elf.Symbol {
	syms, err := read()
	if err != nil {
		return nil
	}
	return syms
}
