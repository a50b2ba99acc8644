// Package views is watershed's view API: the HTTP endpoints that answer a
// device's current state from the device-state table, and its history
// (readings and hourly summaries) from the store.
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
//	  "silent": false, "silent_alerts": 1, "back_alerts": 1,
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
// silent is set while the device is silent (no package received for the
// pipeline's --silence); silent_alerts and back_alerts count its
// device_silent and device_back alerts.
//
// Times are RFC 3339 in UTC with milliseconds. Units are degrees, km/h, g,
// degrees Celsius, percent and volts, as records.Reading holds them.
//
// # History
//
// With Options.Readings and Options.Summaries set (`watershed view
// --history-store`, and the demo), two more resources answer from the store
// of readings (the local store or Cassandra), with the same keys, scopes,
// checks and error bodies as the device endpoint; without them they answer
// 404 {"error":"not found"}.
//
// GET /v1/devices/{device_id}/readings?from=&to=&limit=&cursor= answers
// one page of the device's stored readings with message time in [from,
// to), newest first (descending time, then content CRC):
//
//	{"device_id": "1001", "from": "2024-05-01T00:00:00Z", "to": "2024-05-02T00:00:00Z",
//	 "readings": [{"device_id": "1001", "time": "2024-05-01T23:59:58.000Z", "time_ms": 1714607998000,
//	               "content_crc": 3735928559, "type": "gps", "lat_deg": 52.52, ...}, ...],
//	 "next_cursor": "AQAAAY8zS1Yw3q2-7w"}
//
// Readings have the fields of `watershed readings` (ReadingJSON).
// next_cursor is null on the last page; otherwise the next page is the same
// request with cursor=NEXT_CURSOR added (a cursor is opaque: it names the
// last reading returned, and the next page starts after it, so readings
// stored meanwhile above it do not shift the pages).
//
// GET /v1/devices/{device_id}/summaries?from=&to= answers the device's
// hourly windows that start in [from, to), oldest first: the closed ones
// from the store ("closed": true) and, when Options.OpenWindows has one in
// the range and the store does not hold it yet, the open window
// ("closed": false):
//
//	{"device_id": "1001", "from": "...", "to": "...",
//	 "summaries": [{"window_start": "2024-05-01T11:00:00.000Z", "window_end": "2024-05-01T12:00:00.000Z",
//	                "closed": true, "messages": 360, "distance_m": 18234.5, "max_speed_kmh": 97.3,
//	                "avg_speed_kmh": 41.2, "harsh_events": {"harsh_brake": 2},
//	                "first_message": "2024-05-01T11:00:04.000Z", "last_message": "2024-05-01T11:59:58.000Z"}]}
//
// from and to are RFC 3339 (a zone is required; fractions allowed), from
// inclusive, to exclusive. Without both the range is the last 24 hours up
// to the server's clock; with one, the other is 24 hours away. limit is
// the page size, 1 to 10,000 (default 1,000). Answers beside the device
// endpoint's:
//
//	400 {"error":"malformed from: ..."}   from or to is not RFC 3339
//	    {"error":"reversed range: ..."}   from is after to
//	    {"error":"range over 31 days"}    to - from is longer than 31 days
//	    {"error":"limit must be ..."}     limit is not a whole number from 1 to 10,000
//	    {"error":"malformed cursor"}      cursor is not one this API made
//	    {"error":"unexpected query parameter \"x\""} or a parameter given twice
//	503 {"error":"store unavailable"}     the store is down or overloaded; with Retry-After
//	500 {"error":"internal error"}        the store failed otherwise (the detail is logged)
//
// The checks run in this order: path (404), method (405), the client's
// failed authentications (429), key (401), id and query (400), scope
// (404), store (503, 500, 200). The device-state table's readiness is not
// asked: the store answers for itself.
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
