//go:build !386 && !amd64

package bpf

import (
	"errors"

	"github.com/cilium/ebpf/link"
)

// TLSRecordHeader mirrors struct tls_record; TLS capture is built for
// amd64 only (tls.c reads x86-64 registers), so on other
// architectures nothing produces it.
type TLSRecordHeader struct {
	TsTai, Conn, CgroupId, StartNs, LeaderStartNs uint64
	Tgid, Tid, NsTgid, NsTid, Uid, Mntns, Pidns   uint32
	Seq, Len, DataLen, CallLen                    uint32
	Local, Remote                                 [16]uint8
	Lport, Rport                                  uint16
	Family, Dir, Flags, Pad                       uint8
	Comm                                          [16]int8
}

// TLSRecord is one decoded TLS record.
type TLSRecord struct {
	*TLSRecordHeader
	Data []byte
}

// TLS record flags (enum tls_flags).
const (
	TLSFlagSock  = 1 << 0
	TLSFlagGap   = 1 << 1
	TLSFlagClose = 1 << 2
)

// TLSCollection is not available on this architecture.
type TLSCollection struct{}

var errTLSArch = errors.New("TLS plaintext capture is built for amd64 only")

// LoadTLS fails: TLS capture is built for amd64 only.
func LoadTLS() (*TLSCollection, error) { return nil, errTLSArch }

func (c *TLSCollection) Close() error                                   { return nil }
func (c *TLSCollection) TraceCgroup(uint64) error                       { return errTLSArch }
func (c *TLSCollection) UntraceCgroup(uint64) error                     { return nil }
func (c *TLSCollection) AttachOpenSSL(string, int) ([]link.Link, error) { return nil, errTLSArch }
func (c *TLSCollection) AttachGoTLS(string, int, GoTLSProbes) ([]link.Link, error) {
	return nil, errTLSArch
}
func (c *TLSCollection) AttachLoader(string, int) (link.Link, error) { return nil, errTLSArch }
func (c *TLSCollection) Lost() (uint64, error)                       { return 0, nil }
func (c *TLSCollection) NextTLS(*TLSRecord) error                    { return ErrIdle }

// LoaderSymbol is the dynamic loader's function AttachLoader probes.
const LoaderSymbol = "_dl_debug_state"

// TLSMapped mirrors struct tls_mapped.
type TLSMapped struct {
	TsTai, CgroupId uint64
	Tgid, Pad       uint32
}

func (c *TLSCollection) NextMapped() (TLSMapped, error) { return TLSMapped{}, ErrClosed }
func (c *TLSCollection) CloseMapped() error             { return nil }

// GoTLSProbes mirrors the amd64 type; nothing attaches it here.
type GoTLSProbes struct {
	Read, Write, Close uint64
	ReadRets           []uint64
}
