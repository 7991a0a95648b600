package h2stream

import (
	"errors"

	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/httpstream"
)

// Joining midway. A connection that opened before tracing has an HPACK
// dynamic table whose older entries are unknown. x/net's decoder rejects a
// reference to an entry it does not have, so until the table is known the
// direction decodes with a shadow table instead: static entries and
// literals decode, entries inserted since the join are kept, and a
// reference to an older entry yields an empty field and marks the event
// partial. Nothing is invented. Once the bytes inserted since the join
// exceed any table the peer can have (maxTableSize, or the table size set
// since), every older entry is gone: the known entries are replayed into
// x/net's decoder, which takes over.

// errBadBlock reports a header block that is not valid HPACK.
var errBadBlock = errors.New("malformed header block")

// NewMidway returns a parser for a connection joined midway: no preface
// is expected, both directions start at a frame boundary, and client is
// the side that sends requests.
func NewMidway(stats *httpstream.Stats, client httpstream.Direction) *Parser {
	p := New(stats)
	p.client, p.joined = client, true
	for i := range p.dirs {
		d := &p.dirs[i]
		d.preface = 0
		d.shadow = &shadowTable{max: maxTableSize, bound: maxTableSize}
	}
	return p
}

// NewMidwayProtocol is, as an httpstream.Limits.NewHTTP2Midway factory, a
// parser for a connection joined midway whose client side is not known
// yet: header blocks are decoded but dropped until one carries :method
// (its direction is the client's) or :status (the server's). Both are
// static-table entries, so even a block decoded without the dynamic table
// shows them; DATA before that belongs to no tracked stream.
func NewMidwayProtocol(stats *httpstream.Stats) httpstream.Protocol {
	p := NewMidway(stats, httpstream.Ingress)
	p.roleUnknown = true
	return p
}

// learnRole sets the client side from the block d just decoded; false
// when the block does not tell (it is then dropped). Only a server sends
// PUSH_PROMISE, whose block is a request's.
func (p *Parser) learnRole(d *direction) bool {
	if d.promised != 0 {
		p.client, p.roleUnknown = d.dir^1, false
		return true
	}
	for _, f := range d.fields {
		switch f.Name {
		case ":method":
			p.client = d.dir
		case ":status":
			p.client = d.dir ^ 1
		default:
			continue
		}
		p.roleUnknown = false
		return true
	}
	return false
}

type shadowEntry struct {
	name, value string
	known       bool // false: name or value could not be decoded
}

// shadowTable mirrors the dynamic table from the join on.
type shadowTable struct {
	entries  []shadowEntry // oldest first
	size     int           // known-size bytes of entries (RFC 7541 4.1 sizes)
	max      int           // current maximum size (from size updates)
	inserted int           // bytes inserted since the join
	bound    int           // inserting this many bytes evicts every older entry
	partial  bool          // the current block referenced an unknown entry
}

func entrySize(e shadowEntry) int { return len(e.name) + len(e.value) + 32 }

func (s *shadowTable) insert(e shadowEntry) {
	n := entrySize(e)
	s.inserted += n
	s.entries = append(s.entries, e)
	s.size += n
	s.evict()
}

func (s *shadowTable) evict() {
	for s.size > s.max && len(s.entries) > 0 {
		s.size -= entrySize(s.entries[0])
		s.entries = s.entries[1:]
	}
}

// allKnown reports that every entry since the join decoded fully: an
// entry with an unknown name cannot be replayed.
func (s *shadowTable) allKnown() bool {
	for _, e := range s.entries {
		if !e.known {
			return false
		}
	}
	return true
}

// complete reports that no entry from before the join can remain.
func (s *shadowTable) complete() bool { return s.inserted >= s.bound }

// lookup resolves an HPACK index (1-based; 1..61 static).
func (s *shadowTable) lookup(idx uint64) (shadowEntry, bool) {
	if idx == 0 {
		return shadowEntry{}, false
	}
	if idx <= staticEntries {
		f, ok := staticField(idx)
		return shadowEntry{name: f.Name, value: f.Value, known: ok}, ok
	}
	i := idx - staticEntries - 1 // 0 = newest
	if i < uint64(len(s.entries)) {
		e := s.entries[len(s.entries)-1-int(i)]
		return e, e.known
	}
	return shadowEntry{}, false // from before the join
}

const staticEntries = 61

// staticField decodes one indexed representation of a static entry with
// x/net's decoder, which holds the static table.
func staticField(idx uint64) (hpack.HeaderField, bool) {
	fs, err := hpack.NewDecoder(0, nil).DecodeFull([]byte{0x80 | byte(idx)})
	if err != nil || len(fs) != 1 {
		return hpack.HeaderField{}, false
	}
	return fs[0], true
}

// decode walks one complete header block (RFC 7541 section 6), calling
// emit for every field; a field whose name or value is unknown is emitted
// with the unknown part empty and marks the block partial.
func (s *shadowTable) decode(b []byte, emit func(hpack.HeaderField)) error {
	s.partial = false
	for len(b) > 0 {
		c := b[0]
		switch {
		case c&0x80 != 0: // indexed field
			idx, rest, err := readInt(b, 7)
			if err != nil {
				return err
			}
			b = rest
			e, ok := s.lookup(idx)
			if !ok {
				s.partial = true
			}
			emit(hpack.HeaderField{Name: e.name, Value: e.value})
		case c&0xe0 == 0x20: // dynamic table size update
			size, rest, err := readInt(b, 5)
			if err != nil || size > maxTableSize {
				return errBadBlock
			}
			b = rest
			s.max = int(size)
			if size == 0 {
				s.inserted = s.bound // the table is empty: fully known
			}
			s.evict()
		default: // literal, with incremental indexing (01) or not (0000, 0001)
			prefix := uint8(4)
			if c&0xc0 == 0x40 {
				prefix = 6
			}
			e, rest, err := s.literal(b, prefix)
			if err != nil {
				return err
			}
			b = rest
			if !e.known {
				s.partial = true
			}
			emit(hpack.HeaderField{Name: e.name, Value: e.value})
			if prefix == 6 {
				s.insert(e)
			}
		}
	}
	return nil
}

func (s *shadowTable) literal(b []byte, prefix uint8) (shadowEntry, []byte, error) {
	idx, b, err := readInt(b, prefix)
	if err != nil {
		return shadowEntry{}, nil, err
	}
	e := shadowEntry{known: true}
	if idx > 0 {
		n, ok := s.lookup(idx)
		e.name, e.known = n.name, ok
	} else if e.name, b, err = readString(b); err != nil {
		return shadowEntry{}, nil, err
	}
	if e.value, b, err = readString(b); err != nil {
		return shadowEntry{}, nil, err
	}
	return e, b, nil
}

// readInt reads an HPACK integer with an n-bit prefix (RFC 7541 5.1).
func readInt(b []byte, n uint8) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errBadBlock
	}
	limit := uint64(1)<<n - 1
	v := uint64(b[0]) & limit
	b = b[1:]
	if v < limit {
		return v, b, nil
	}
	for m := uint(0); len(b) > 0 && m < 63; m += 7 {
		c := b[0]
		b = b[1:]
		v += uint64(c&0x7f) << m
		if c&0x80 == 0 {
			return v, b, nil
		}
	}
	return 0, nil, errBadBlock
}

// readString reads a string literal, Huffman-decoded by x/net.
func readString(b []byte) (string, []byte, error) {
	if len(b) == 0 {
		return "", nil, errBadBlock
	}
	huff := b[0]&0x80 != 0
	n, b, err := readInt(b, 7)
	if err != nil || n > uint64(len(b)) || n > maxStringLen {
		return "", nil, errBadBlock
	}
	raw := b[:n]
	if !huff {
		return string(raw), b[n:], nil
	}
	s, err := hpack.HuffmanDecodeToString(raw)
	if err != nil {
		return "", nil, errBadBlock
	}
	return s, b[n:], nil
}

// takeOver replays the known table into a fresh x/net decoder, oldest entry
// first, as literals with incremental indexing, and drops the shadow.
func (d *direction) takeOver() error {
	s := d.shadow
	dec := hpack.NewDecoder(uint32(s.max), func(hpack.HeaderField) {})
	dec.SetMaxStringLength(maxStringLen)
	dec.SetAllowedMaxDynamicTableSize(maxTableSize) // the peer's size is unknown: accept what we accept anyway
	var blk []byte
	for _, e := range s.entries {
		blk = append(blk, 0x40)
		blk = appendString(blk, e.name)
		blk = appendString(blk, e.value)
	}
	if _, err := dec.Write(blk); err != nil {
		return err
	}
	if err := dec.Close(); err != nil {
		return err
	}
	dec.SetEmitFunc(d.onField)
	d.dec, d.shadow = dec, nil
	return nil
}

// appendString appends a raw (not Huffman) string literal.
func appendString(b []byte, s string) []byte {
	n := uint64(len(s))
	if n < 127 {
		b = append(b, byte(n))
	} else {
		b = append(b, 127)
		for n -= 127; n >= 128; n >>= 7 {
			b = append(b, byte(n&0x7f)|0x80)
		}
		b = append(b, byte(n))
	}
	return append(b, s...)
}
