package views

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/watershed-io/watershed/codecs/records"
)

// Access is what an authenticated request may see: the scope of its key.
type Access struct {
	keys *Keys
	sc   *scope
}

// All reports whether the key sees every device (a "*" key), which the
// operators' views of the whole pipeline (the console's topology and dead
// letters) require.
func (a Access) All() bool { return a.sc != nil && a.sc.all }

// Sees reports whether the key sees device id.
func (a Access) Sees(id uint64) bool { return a.sc != nil && a.keys.sees(a.sc, id) }

// Authenticate checks r's bearer key as the API does, the failed-auth limit
// per client address included, and returns its access. When the key is
// missing or wrong it answers 401 (or 429 past the limit), counts it in
// watershed_view_auth_failures_total (and _rate_limited_total), and returns
// false. Other handlers of the process (the
// console) use it so that they accept the same keys, reloads included.
func (s *Server) Authenticate(w http.ResponseWriter, r *http.Request) (Access, bool) {
	a, code := s.authenticate(w, r)
	return a, code == 0
}

// authenticate returns the request's access, or writes the 401 or 429
// answer and returns its code. The key is checked first: a valid key passes
// whatever its address did, so that clients sharing an address (a NAT, an
// ingress) cannot be locked out by one of them sending bad keys. A failure
// counts against the address, and an address that failed too often is
// answered 429 (keys are long: the limit is flood control, not what stops
// guessing).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Access, int) {
	keys := s.keys.Load()
	sc := authenticate(keys, r.Header)
	if sc != nil {
		return Access{keys: keys, sc: sc}, 0
	}
	s.metrics.authFailed.Inc()
	if s.limiter != nil {
		client := clientKey(r.RemoteAddr)
		if wait, blocked := s.limiter.blocked(client, s.now()); blocked {
			s.metrics.authLimited.Inc()
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
			return Access{}, s.write(w, http.StatusTooManyRequests, bodyTooMany)
		}
		s.limiter.failed(client, s.now())
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="watershed"`)
	return Access{}, s.write(w, http.StatusUnauthorized, bodyUnauthorized)
}

// MarshalDevice returns the JSON the API answers for the state s of
// device id (see the package comment).
func MarshalDevice(id uint64, s *records.DeviceState) ([]byte, error) {
	return json.Marshal(newDeviceJSON(id, s))
}
