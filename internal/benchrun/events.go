package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// eventTally is what boxtap's stdout holds: every line parsed as an event,
// and the exchanges behind them told apart, so that a duplicated event
// cannot stand in for a missed one.
type eventTally struct {
	lines      uint64 // newline-terminated lines
	bad        uint64 // lines that are not a net_packet_http_response event with its metadata
	distinct   uint64 // distinct exchanges: connection 4-tuple, response timestamp, HTTP/2 stream
	duplicates uint64 // events whose exchange was already seen
}

// exchangeKey names one response: its connection, as the event's metadata
// gives it, the timestamp of its first byte and its HTTP/2 stream (0 for
// HTTP/1). Two HTTP/1 responses of one connection only share a timestamp if
// they start in the same segment (pipelining), which wrk does not do; the
// frames of several HTTP/2 streams often share one, and the stream tells
// them apart.
type exchangeKey struct {
	srcIP, dstIP     string
	srcPort, dstPort uint16
	ts               int64
	stream           uint32
}

// benchEvent holds the only fields of an event the bench reads.
type benchEvent struct {
	Timestamp int64  `json:"timestamp"`
	EventName string `json:"eventName"`
	Args      []struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	} `json:"args"`
}

type benchMeta struct {
	SrcIP   string `json:"src_ip"`
	DstIP   string `json:"dst_ip"`
	SrcPort uint16 `json:"src_port"`
	DstPort uint16 `json:"dst_port"`
}

// exchangeOf returns the exchange an event line describes.
func exchangeOf(line []byte) (exchangeKey, error) {
	var ev benchEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return exchangeKey{}, err
	}
	if ev.EventName != "net_packet_http_response" || ev.Timestamp == 0 {
		return exchangeKey{}, fmt.Errorf("not a net_packet_http_response event with a timestamp")
	}
	var k exchangeKey
	haveMeta := false
	for _, a := range ev.Args {
		switch a.Name {
		case "metadata":
			var m benchMeta
			if err := json.Unmarshal(a.Value, &m); err != nil {
				return exchangeKey{}, fmt.Errorf("metadata: %w", err)
			}
			if m.SrcPort == 0 || m.DstPort == 0 {
				return exchangeKey{}, errors.New("metadata without ports")
			}
			k.srcIP, k.dstIP, k.srcPort, k.dstPort, k.ts = m.SrcIP, m.DstIP, m.SrcPort, m.DstPort, ev.Timestamp
			haveMeta = true
		case "stream_id":
			if err := json.Unmarshal(a.Value, &k.stream); err != nil || k.stream == 0 {
				return exchangeKey{}, fmt.Errorf("stream_id %s: not a stream", a.Value)
			}
		}
	}
	if !haveMeta {
		return exchangeKey{}, errors.New("no metadata argument")
	}
	return k, nil
}

// tallyEvents reads boxtap's JSON Lines output.
func tallyEvents(r io.Reader) (eventTally, error) {
	var t eventTally
	seen := map[exchangeKey]struct{}{}
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			t.lines++
			t.count(seen, bytes.TrimSpace(line))
		} else if len(line) > 0 {
			t.bad++ // a last line without its newline was cut short
		}
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			return t, err
		}
	}
}

func (t *eventTally) count(seen map[exchangeKey]struct{}, line []byte) {
	k, err := exchangeOf(line)
	if err != nil {
		t.bad++
		return
	}
	if _, dup := seen[k]; dup {
		t.duplicates++
		return
	}
	seen[k] = struct{}{}
	t.distinct++
}

// tallyFile tallies the events in a file.
func tallyFile(path string) (eventTally, error) {
	f, err := os.Open(path)
	if err != nil {
		return eventTally{}, err
	}
	defer f.Close()
	t, err := tallyEvents(f)
	if err != nil {
		return t, fmt.Errorf("reading %s: %w", path, err)
	}
	return t, nil
}
