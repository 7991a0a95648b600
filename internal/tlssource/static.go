package tlssource

import "debug/elf"

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
	return definesOpenSSL(ef)
}

// definesOpenSSL is DefinesOpenSSL for a file already read as ELF.
func definesOpenSSL(ef *elf.File) bool {
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
