//go:build 386 || amd64

package bpf

import (
	"errors"
	"testing"
	"unsafe"
)

func TestTLSHeaderLayoutMatchesC(t *testing.T) {
	// struct tls_record in tlsinclude/tls.h: 5 u64, 11 u32, 2x16 addresses,
	// 2 u16, 4 u8, 16 comm, padded to 8.
	const want = (5*8 + 11*4 + 32 + 2*2 + 4 + 16 + 7) &^ 7
	if tlsHeaderSize != want {
		t.Fatalf("tls_record header is %d bytes in Go, %d in C", tlsHeaderSize, want)
	}
}

func rawTLS(h tlsTlsRecord, data string) []byte {
	h.DataLen = uint32(len(data))
	raw := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&h)), tlsHeaderSize)...)
	return alignedCopy(append(raw, data...))
}

func TestDecodeTLSRecord(t *testing.T) {
	var rec TLSRecord
	raw := rawTLS(tlsTlsRecord{Conn: 7, Seq: 100, Len: 5, Dir: 1, Flags: TLSFlagSock}, "HTTP/")
	if err := DecodeTLSRecord(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Conn != 7 || rec.Seq != 100 || rec.Dir != 1 || string(rec.Data) != "HTTP/" {
		t.Fatalf("decoded %+v data %q", *rec.TLSRecordHeader, rec.Data)
	}
	for name, raw := range map[string][]byte{
		"short header":       alignedCopy(raw[:tlsHeaderSize-1]),
		"data beyond sample": alignedCopy(raw[:len(raw)-1]),
	} {
		if err := DecodeTLSRecord(raw, &rec); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: err %v, want ErrMalformedRecord", name, err)
		}
	}
}

func FuzzDecodeTLSRecord(f *testing.F) {
	f.Add(rawTLS(tlsTlsRecord{Len: 3}, "abc"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec TLSRecord
		raw := alignedCopy(b)
		if err := DecodeTLSRecord(raw, &rec); err != nil {
			if !errors.Is(err, ErrMalformedRecord) {
				t.Fatalf("error %v does not wrap ErrMalformedRecord", err)
			}
			return
		}
		if len(rec.Data) != int(rec.DataLen) || tlsHeaderSize+len(rec.Data) > len(raw) {
			t.Fatalf("data %d bytes, header says %d, sample %d", len(rec.Data), rec.DataLen, len(raw))
		}
	})
}
