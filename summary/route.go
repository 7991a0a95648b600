// Package summary aggregates traced exchanges into a table a person reads at
// exit: one row per container, method, route and status class, with count,
// rate, latency percentiles (HDR histograms) and bytes.
package summary

import "strings"

// IDSegment replaces path segments that look like identifiers.
const IDSegment = "{id}"

// OtherRoute holds a container's exchanges beyond its route limit.
const OtherRoute = "other"

// CollapseRoute turns a request path into a route: the query and fragment
// are dropped and every segment that is a number, a UUID or a long hex
// string becomes {id}, so /users/42/orders/9f8e... reads /users/{id}/orders/{id}.
func CollapseRoute(uri string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if uri == "" {
		return "/"
	}
	if !strings.Contains(uri, "/") {
		return uri // "*" (OPTIONS) or an authority (CONNECT)
	}
	// Absolute-form targets (proxies) keep only their path.
	if strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://") {
		rest := uri[strings.Index(uri, "//")+2:]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			uri = rest[i:]
		} else {
			return "/"
		}
	}
	if !needsCollapse(uri) {
		return uri
	}
	var b strings.Builder
	b.Grow(len(uri))
	for i, seg := range strings.Split(uri, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if isID(seg) {
			b.WriteString(IDSegment)
		} else {
			b.WriteString(seg)
		}
	}
	return b.String()
}

// needsCollapse reports whether any segment of p is an id.
func needsCollapse(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if isID(seg) {
			return true
		}
	}
	return false
}

// isID: all digits; a UUID (8-4-4-4-12 hex digits); or at least 12 hex
// digits with at least one decimal digit among them (hashes, object ids).
// Requiring a decimal digit keeps long words made of a-f letters only
// ("acceptedface") as they are.
func isID(seg string) bool {
	if seg == "" {
		return false
	}
	if allDigits(seg) {
		return true
	}
	if isUUID(seg) {
		return true
	}
	return len(seg) >= 12 && allHex(seg) && strings.ContainsAny(seg, "0123456789")
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// isUUID matches the canonical 36-character form, any version.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}
