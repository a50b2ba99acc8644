// Package views is watershed's view API: the HTTP endpoint that answers a
// device's current state from the device-state table.
//
// # Contract
//
// GET /v1/devices/{device_id}, where device_id is a device id in canonical
// decimal (ASCII digits, no sign, no leading zeros except "0" itself, at
// most 2^64-1), with "Authorization: Bearer KEY". Every answer is JSON with
// Content-Type application/json; errors are {"error": "..."}:
//
//	200 the device's state (see below)
//	400 {"error":"malformed device id"}  the id is empty, not canonical decimal, or overflows;
//	    {"error":"unexpected query"}     the request has a query string
//	401 {"error":"unauthorized"}         the key is missing or wrong; with WWW-Authenticate: Bearer
//	404 {"error":"unknown device"}       the device has no state, or is outside the key's scope
//	                                     (the two answers are byte-identical);
//	    {"error":"not found"}            the path is not /v1/devices/{device_id}
//	405 {"error":"method not allowed"}   any method but GET; with Allow: GET
//	429 {"error":"too many failed authentications"}
//	                                     the client address failed to authenticate too
//	                                     often; with Retry-After; the key is not looked at
//	500 {"error":"internal error"}       the source failed (the detail is logged)
//	503 {"error":"not ready"}            the source is not caught up; with Retry-After
//	                                     (the reason is on the operators' listener only)
//
// The checks run in this order: path (404), method (405), the client's
// failed authentications (429), key (401), query and id (400), readiness
// (503), scope (404), lookup (500, 404, 200).
//
// A 200 body looks like this (a version 2 device; fields of readings the
// device never sent are absent, and so are firmware, firmware_raw, hdop and
// satellites for version 1 devices; last_seen is null before any message):
//
//	{
//	  "device_id": "18446744073709551615",
//	  "messages": 120, "duplicates": 3, "invalid": 1, "packages_rejected": 0,
//	  "last_seen": "2024-05-01T12:00:00.123Z",
//	  "firmware": "2.3", "firmware_raw": 515,
//	  "protocol_version": 2,
//	  "gps": {"time": "2024-05-01T12:00:00.123Z", "lat_deg": 52.52, "lon_deg": 13.405,
//	          "speed_kmh": 87.5, "heading_deg": 270, "hdop": 0.9, "satellites": 11},
//	  "engine": {"time": "...", "rpm": 2100, "coolant_c": 88, "fuel_pct": 64},
//	  "accel": {"time": "...", "x_g": 0.012, "y_g": -0.25, "z_g": 1.003},
//	  "battery": {"time": "...", "battery_v": 12.6},
//	  "event": {"time": "...", "code": 3, "name": "harsh_brake", "severity": 4}
//	}
//
// Times are RFC 3339 in UTC with milliseconds. Units are degrees, km/h, g,
// degrees Celsius, percent and volts, as records.Reading holds them.
//
// # Keys
//
// Keys decide who sees which devices: a key sees every device ("*"), the
// devices of some fleets, and/or some devices by id. Presented keys are
// hashed with SHA-256 and looked up by hash, so that no comparison leaks a
// key's prefix through timing; a key may be configured as its hash
// (HashPrefix), so that key files need not hold keys. Keys shorter than
// MinKeyLength are refused unless Options.AllowShortKeys. See LoadKeys for
// the file formats, FullScopeKey for the single key taken from
// WATERSHED_VIEW_KEY, Server.SetKeys and Server.WatchKeys for replacing the
// keys of a running server (on a file change or a signal).
//
// Failed authentications are limited per client address (Options
// AuthFailureRate and AuthFailureBurst): past the limit the address is
// answered 429 for its bad keys; a good key passes from any address.
//
// # Metrics
//
// On the Registerer of Options:
//
//	watershed_view_requests_total{code}        requests answered, by HTTP status code
//	watershed_view_request_duration_seconds    time to answer a request (histogram)
//	watershed_view_auth_failures_total         requests answered 401
//	watershed_view_auth_rate_limited_total     requests answered 429 (failed too often)
//	watershed_view_key_reloads_total{result}   key reloads by WatchKeys: ok, error
//	watershed_view_keys_stale                  1 while the key files do not load
package views
