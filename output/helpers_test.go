package output

import (
	"net/netip"
	"time"
)

// fullEvent returns an event with every field set; the IPs are chosen by the
// caller so tests cover IPv4, IPv6 and IPv4-mapped addresses.
func fullEvent(src, dst netip.Addr) *Event {
	return &Event{
		Timestamp:           1696269880377378962,
		ThreadStartTime:     1696269880249502196,
		ProcessorID:         6,
		ProcessID:           21,
		ThreadID:            22,
		ParentProcessID:     7,
		HostProcessID:       691018,
		HostThreadID:        1077380,
		HostParentProcessID: 691004,
		UserID:              1000,
		MountNS:             4026532885,
		PIDNS:               4026532889,
		CgroupID:            18465,
		ProcessName:         "inform-161",
		ExecutablePath:      "/usr/local/bin/inform",
		HostName:            "95e88e281c4b",
		Container: Container{
			ID:          "95e88e281c4b47994e0d17ac74b83761fbc3ea570c3f1d4b98b6501ecc00dd84",
			Name:        "web",
			Image:       "nginx:1.25",
			ImageDigest: "sha256:0d17ac74b83761fbc3ea570c3f1d4b98b6501ecc00dd8495e88e281c4b47994e",
		},
		Kubernetes: Kubernetes{
			PodName:      "web-0",
			PodNamespace: "default",
			PodUID:       "2c1b3f1e-6a3c-4f7d-9a57-0e6b1d3a1f00",
			PodSandbox:   true,
		},
		ContainerStarted: true,
		ThreadEntityID:   EntityID(1077380, 1696269880249502196),
		ProcessEntityID:  EntityID(691018, 1696268045240158340),
		ParentEntityID:   EntityID(691004, 1696268045000000000),
		Meta: PacketMeta{
			SrcIP:     src,
			DstIP:     dst,
			SrcPort:   8080,
			DstPort:   50322,
			Protocol:  6,
			PacketLen: 331,
			Iface:     "eth0",
		},
		Response: Response{
			Status:     "200 OK",
			StatusCode: 200,
			Protocol:   "HTTP/1.1",
			Headers: []Header{
				{"Date", "Mon, 02 Oct 2023 18:04:38 GMT"},
				{"content-type", "text/html; charset=UTF-8"},
				{"Set-Cookie", "a=1; Path=/"},
				{"Vary", "Accept-Encoding"},
				{"set-cookie", "b=2; Secure"},
				{"Content-Length", "180"},
			},
			ContentLength: 180,
		},
		Request: &Request{
			Method:   "GET",
			Protocol: "HTTP/1.1",
			Host:     "example.test",
			URIPath:  "/index.html",
			Headers: []Header{
				{"Host", "example.test"},
				{"User-Agent", "curl/8.0"},
				{"Accept", "*/*"},
			},
			ContentLength: 0,
		},
		Latency:          1500 * time.Microsecond,
		LatencyKnown:     true,
		Direction:        DirectionEgress,
		Truncated:        true,
		ContainerRuntime: "docker",
		LostRecords:      3,
	}
}

// sanitizeUTF8 replaces every invalid UTF-8 byte of s with U+FFFD, which is
// what a JSON round trip of our output must yield.
func sanitizeUTF8(s string) string {
	return string([]rune(s))
}
