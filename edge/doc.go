// Package edge is watershed's ingest edge: the HTTP endpoint that devices
// send their packages to, and that writes each accepted package, unchanged,
// to the raw topic of the pipeline.
//
// # Contract
//
// POST /v1/packages carries one package as its body and
// "Authorization: Bearer TOKEN". TOKEN is either version 1, Token(secret,
// device_id): the lowercase hex HMAC-SHA256 of the package's device_id in
// decimal ASCII, keyed by the edge's device secret; or version 2,
// TokenV2: "v2." and the base64url of the device id, an expiry and a key
// generation, with their HMAC under the device's own key, derived from the
// secret with HKDF (docs/security.md has the format). The current secret
// and, during a rotation, the previous one are both tried. The check is
// stateless but for the revocation file (Options.RevocationFile), held in
// memory: no lookup per request.
//
// The edge reads the package header first (the first 34 or 36 bytes of the
// body), runs PROTOCOL.md's checks 1-2 on it, and checks the token against
// its device_id; only then does the request take a concurrency slot
// (serve.Admit), one of its device's Options.MaxDeviceInFlight places, its
// device's rate-limit tokens and budget for its body. Until then it holds
// nothing shared but its client address's count of unauthenticated
// requests (Options.MaxUnauthenticatedPerClient). The header must arrive
// within Options.BodyTimeout, the rest within BodyTimeout plus its length
// at Options.MinBodyRate. It answers:
//
//	202 {"status":"accepted"}  the package is in the raw topic, acknowledged by all in-sync replicas
//	400 {"error":REASON}       checks 1-2 failed: truncated, bad_magic, unsupported_version, header_crc
//	                           (also "bad_request" when the request body could not be read, or not
//	                           within its deadline)
//	401 {"error":"unauthorized"} the token is missing, wrong, for another device_id, expired, revoked,
//	                           or of version 1 while those are refused
//	413 {"error":"too_large"}  body_len over 1,048,576, or a body longer than MaxPackageBytes;
//	                           nothing is written
//	422 {"error":REASON}       authenticated, but checks 3-4 failed (bad_flags, zero_device,
//	                           bad_count, truncated, trailing_bytes); the package was written
//	                           to the dead-letter topic as a records.Envelope first
//	429 {"error":"overloaded"} the in-flight byte budget is spent, or the client address has its
//	                           maximum of unauthenticated requests; with Retry-After
//	429 {"error":"rate_limited"} the device is over Options.DeviceRate or DeviceByteRate, with a
//	                           Retry-After of the seconds until its buckets hold enough again;
//	                           or it has MaxDeviceInFlight packages in flight, with Retry-After
//	503 {"error":"unavailable"} Kafka did not acknowledge in time, or the edge is closing;
//	                           with Retry-After (the server's {"error":"overloaded"} when it is
//	                           at its concurrency bound)
//
// The order: a missing Authorization header (401) and a Content-Length
// over MaxPackageBytes (413) from the request's headers; the client's
// unauthenticated cap (429); the package header, checks 1-2 (400); the
// token (401); the concurrency slot (503), the device's in-flight cap
// (429), a body_len over the limit (413), the device's rate limit (429);
// the body within the byte budget (429, 413, 400); checks 3-4 (413 or
// 422); and the produce (202 or 503). The limits come after the token, so
// that requests with a wrong token never spend a device's share, and a
// stolen token spends only its own device's. A record whose wait timed out
// may still reach Kafka later; the device retries, and the pipeline's
// dedupe drops the copy.
//
// # Records
//
// The raw record's key is the device_id in decimal, its value the package
// bytes as received, and it carries two headers: HeaderReceivedMs (the
// receive time in Unix milliseconds, decimal ASCII; read it back with
// ingest.ReceivedAt) and HeaderEdgeID. Records are produced with
// kafkaclient.ProducerConfig (the partitioner goka assumes, acks from
// all in-sync replicas, idempotent). A dead-lettered package is a records.Envelope with Stage
// "edge", the same key, the same headers, Topic set to the raw topic and
// Partition and Offset -1.
//
// # Metrics
//
// The edge registers these on Options.Registerer:
//
//	watershed_edge_requests_total{code}          counter: answered requests by HTTP status code
//	watershed_edge_rejected_total{reason}        counter: requests not answered 202, by reason: a
//	                                             protocol reason word, or missing_token, bad_token,
//	                                             expired_token, revoked_token, v1_token_refused,
//	                                             overloaded, client_limit, device_in_flight,
//	                                             rate_limited, unavailable, bad_request
//	watershed_edge_inflight_bytes                gauge: request-body (or dead-letter envelope) bytes
//	                                             held, from reading until Kafka answered for them
//	watershed_edge_produce_duration_seconds      histogram: from handing a record to the producer to
//	                                             Kafka's answer (raw and dead-letter records)
//	watershed_edge_package_bytes                 histogram: sizes of the request bodies read
//	watershed_edge_rate_limited_total            counter: authenticated requests answered 429 because
//	                                             their device was over its rate
//	watershed_edge_rate_limiter_devices          gauge: devices whose token buckets are held
//	watershed_edge_unauthenticated_requests      gauge: requests reading their package header, before
//	                                             the token is checked
//	watershed_edge_v1_tokens_total               counter: requests accepted with a version 1 token
//	watershed_edge_revoked_devices               gauge: devices listed in the revocation file
//	watershed_edge_revocation_reloads_total{result} counter: loads of the revocation file (ok, error)
//
// # Rate limit
//
// With Options.DeviceRate or DeviceByteRate set, each device id has a token
// bucket of Options.DeviceBurst packages refilled at DeviceRate a second,
// and one of DeviceByteBurst bytes refilled at DeviceByteRate a second; a
// package takes one and its length (by Content-Length, else its header)
// from them, and neither when either lacks. The buckets
// take about 64 bytes a device, for at most Options.MaxRateLimitedDevices
// devices (64 MiB at the default): refilled buckets are dropped first, then
// arbitrary ones, which only gives those devices a fresh burst.
package edge
