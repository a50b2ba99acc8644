package edge

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/watershed-io/watershed/internal/serve"
)

// Proxy headers that name a request's client address (Options.ProxyHeader).
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded"
)

// clientAddr returns the address that per-client limits count r under
// (serve.ClientKey of it): the connection's peer, or, when the peer is a
// trusted proxy, the nearest address of the proxy chain in header (the one
// header the proxies write: X-Forwarded-For or Forwarded) that is not
// itself a trusted proxy. The other header is never read: proxies pass a
// header they do not write through unchanged, so a client could name any
// address in it. Without trusted proxies no header is believed.
func clientAddr(r *http.Request, trusted []netip.Prefix, header string) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if len(trusted) == 0 || !serve.Trusted(trusted, peer) {
		return serve.ClientKey(peer)
	}
	var hops []string
	if header == HeaderForwarded {
		hops = forwardedFor(r.Header.Values(HeaderForwarded))
	} else {
		for _, v := range r.Header.Values(HeaderXForwardedFor) {
			for h := range strings.SplitSeq(v, ",") {
				hops = append(hops, strings.TrimSpace(h))
			}
		}
	}
	// The right end was appended by the nearest proxy; the left end is
	// whatever the client wrote.
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // an obfuscated or malformed hop: keep the last proxy
		}
		client = a
		if !serve.Trusted(trusted, a) {
			break
		}
	}
	return serve.ClientKey(client)
}

// remoteAddr parses a Request.RemoteAddr ("ip:port").
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(s)
	return a
}

// forwardedFor returns the for= addresses of RFC 7239 Forwarded headers,
// in order, without ports or brackets; nil when there are none.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				val = strings.Trim(val, `"`)
				if strings.HasPrefix(val, "[") { // [v6]:port
					if end := strings.IndexByte(val, ']'); end > 0 {
						val = val[1:end]
					}
				} else if host, _, found := strings.Cut(val, ":"); found && strings.Count(val, ":") == 1 {
					val = host
				}
				out = append(out, val)
			}
		}
	}
	return out
}
